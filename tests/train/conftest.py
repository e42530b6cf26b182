"""Shared set-up for the training tests: a private cache for the synthetic data set and tiny configs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# trainkit (tiny configs) is imported by name from the test modules.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Generated data goes to a per-session cache, never the user's ~/.cache (subprocesses inherit it)."""
    old = os.environ.get("EDVR_FAST_CACHE")
    os.environ["EDVR_FAST_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("EDVR_FAST_CACHE", None)
    else:
        os.environ["EDVR_FAST_CACHE"] = old
