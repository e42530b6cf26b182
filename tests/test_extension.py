"""edvr_fast._C is loaded only under the torch it was built for (setup.py records it in _C.build.json): a
mismatch is one clear warning, the pure-PyTorch kernels run, and backend() says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edvr_fast import _extension

FAKE = "1.99.0+fake"

# A child process whose build record claims another torch (the record is read before _C is imported).
CHILD = f"""
import importlib.util, sys, warnings
from pathlib import Path
# `import edvr_fast` registers the op (loading _C), so the fake goes in before the package is imported:
# _extension is loaded on its own under its full name, patched, and the package then finds it in sys.modules.
pkg = Path(importlib.util.find_spec("edvr_fast").submodule_search_locations[0])
spec = importlib.util.spec_from_file_location("edvr_fast._extension", pkg / "_extension.py")
ext = importlib.util.module_from_spec(spec)
sys.modules["edvr_fast._extension"] = ext
spec.loader.exec_module(ext)
ext.built_for = lambda record=None: {FAKE!r}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch
    import edvr_fast.ops as ops
    from edvr_fast.data.pack import _banded_png_encoder
    from edvr_fast.data.loader import _extension
    ops.backend()
said = [str(w.message) for w in caught if issubclass(w.category, ext.ExtensionMismatchWarning)]
print("WARNINGS", len(said))
print("MESSAGE", said[0] if said else "")
print("BACKEND", ops.backend())
print("LOADED", "edvr_fast._C" in sys.modules)
print("PNG", _banded_png_encoder())
try:
    _extension()
except Exception as exc:
    print("LOADER", type(exc).__name__, exc)
x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
off, mask = torch.zeros(1, 18, 6, 6, dtype=torch.float64), torch.ones(1, 9, 6, 6, dtype=torch.float64)
w = torch.randn(4, 4, 3, 3, dtype=torch.float64)
y = ops.modulated_deform_conv2d(x, off, mask, w, None, padding=1)
ref = torch.nn.functional.conv2d(x, w, padding=1)
print("RESULT", bool(torch.allclose(y, ref)))
"""


def test_mismatch_message_names_both_versions_and_the_fix():
    assert _extension.mismatch("2.14.1", "2.14.1") is None and _extension.mismatch(None, "2.14.1") is None
    msg = _extension.mismatch("2.11.0+cu130", "2.14.1")
    assert "built for torch 2.11.0+cu130" in msg and "torch 2.14.1 is running" in msg
    assert "pip install --no-build-isolation ." in msg and "\n" not in msg


def test_build_record_is_read(tmp_path):
    rec = tmp_path / _extension.RECORD
    assert _extension.built_for(rec) is None  # no record: nothing to compare (a checkout without a build)
    rec.write_text(json.dumps({"torch": FAKE}))
    assert _extension.built_for(rec) == FAKE
    rec.write_text("not json")
    assert _extension.built_for(rec) is None


def test_faked_build_version_falls_back_with_one_warning():
    env = {k: v for k, v in os.environ.items() if k != "EDVR_FAST_FORCE_FALLBACK"}
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)
    assert out["WARNINGS"] == "1"  # said once, however many modules ask
    assert f"built for torch {FAKE}" in out["MESSAGE"] and f"torch {torch.__version__} is running" in out["MESSAGE"]
    assert f"built for torch {FAKE}" in out["BACKEND"] and "'cpu': 'fallback'" in out["BACKEND"]
    assert out["LOADED"] == "False" and out["PNG"] == "None"
    assert out["LOADER"].startswith("ExtensionError") and FAKE in out["LOADER"]
    assert out["RESULT"] == "True"


def test_installed_build_record_matches_the_running_torch():
    """What setup.py writes beside the module it built (CI builds and requires the extension)."""
    import edvr_fast

    rec = Path(edvr_fast.__file__).with_name(_extension.RECORD)
    if not rec.exists():
        if os.environ.get("EDVR_FAST_REQUIRE_EXTENSION") == "1":
            pytest.fail(f"{rec} is missing: setup.py did not record the torch it built against")
        pytest.skip("no build record beside edvr_fast/ (extension built by an older setup.py, or not built)")
    assert _extension.built_for(rec) == str(torch.__version__)
