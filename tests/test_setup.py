"""setup.py refuses a compiler whose C++ runtime is only a static libstdc++ (the copy it would link into
edvr_fast._C crashes the process on C++ error messages), and accepts this machine's compiler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _setup_name(**env: str) -> subprocess.CompletedProcess:
    """`python setup.py --name`: runs setup.py's checks and prints the name, builds nothing."""
    return subprocess.run(
        [sys.executable, "setup.py", "--name"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("var", ["CXX", "CC"])
def test_compiler_without_shared_libstdcxx_is_refused(tmp_path: Path, var: str) -> None:
    # Answers -print-file-name like a GCC that ships libstdc++.a only: the bare name, not a path.
    fake = tmp_path / "static-only-g++"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in -print-file-name=*) echo "${a#*=}"; exit 0;; esac; done\n'
        'exec g++ "$@"\n'
    )
    fake.chmod(0o755)
    res = _setup_name(**{var: str(fake)})
    assert res.returncode != 0
    assert f"{var}={fake} has no shared libstdc++" in res.stderr
    assert "CXX=g++ CC=gcc pip install --no-build-isolation ." in res.stderr


def test_this_machines_compiler_passes_the_check() -> None:
    res = _setup_name()
    assert res.returncode == 0, res.stderr[-2000:]
    assert "no shared libstdc++" not in res.stderr
    assert res.stdout.strip().splitlines()[-1] == "edvr_fast"
