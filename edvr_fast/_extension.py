"""Loading the compiled extension `edvr_fast._C` only when it was built for the running torch: setup.py
records that torch's version in `_C.build.json` beside the module; a mismatch is said once and not loaded.

A module built against another torch fails with an undefined symbol at best and crashes at worst, so the
version is compared before the import, from the record, never by trying.
"""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path
from types import ModuleType

RECORD = "_C.build.json"  # written by setup.py next to _C*.so: {"torch": "<torch.__version__ at build time>"}
REBUILD = "pip install --no-build-isolation .  (in a checkout: python setup.py build_ext --inplace)"


class ExtensionMismatchWarning(RuntimeWarning):
    """edvr_fast._C was built for another torch: the pure-PyTorch kernels run instead."""


def built_for(record: Path | None = None) -> str | None:
    """The torch version the extension was built against, from its build record (None: no record)."""
    path = record or Path(__file__).with_name(RECORD)
    try:
        return str(json.loads(path.read_text())["torch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def mismatch(built: str | None, running: str) -> str | None:
    """The one-line message for an extension built for `built` under torch `running`, or None if they agree."""
    if built is None or built == running:
        return None
    return (f"edvr_fast._C was built for torch {built} but torch {running} is running: using the pure-PyTorch "
            f"kernels (no compiled DCN, no fused loader); rebuild with: {REBUILD}")


@functools.cache
def load_extension() -> tuple[ModuleType | None, str | None]:
    """(edvr_fast._C, None), or (None, why) when it is missing, fails to import, or is for another torch."""
    import torch

    running = str(torch.__version__)
    why = mismatch(built_for(), running)
    if why is not None:
        warnings.warn(why, ExtensionMismatchWarning, stacklevel=2)
        return None, why
    try:
        from edvr_fast import _C
    except ImportError as exc:  # a source checkout without a build
        return None, str(exc)
    return _C, None
