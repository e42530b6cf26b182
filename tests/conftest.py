"""Shared test set-up: test helper modules are importable by name; the installed edvr_fast is tested."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Helper modules (plain-loop references) live beside the tests that use them.
for sub in ("ops",):
    p = str(Path(__file__).parent / sub)
    if p not in sys.path:
        sys.path.insert(0, p)


def pytest_report_header(config):
    import edvr_fast.ops as ops

    return [f"edvr_fast from {Path(ops.__file__).parent.parent}", f"edvr_fast backend: {ops.backend()}"]


@pytest.fixture(scope="session", autouse=True)
def _require_extension():
    """CI sets EDVR_FAST_REQUIRE_EXTENSION=1 so a missing compiled extension fails instead of skipping."""
    if os.environ.get("EDVR_FAST_REQUIRE_EXTENSION") == "1":
        from edvr_fast.ops import _registry

        if _registry._state["extension"] is None:
            pytest.fail(f"edvr_fast._C did not load: {_registry._state['extension_error']}")
