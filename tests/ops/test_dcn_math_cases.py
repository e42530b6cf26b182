"""The fixture that ctest checks the CUDA math header against still matches the Python operator."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_fixture_matches_operator():
    path = Path(__file__).parents[1] / "cpp" / "make_dcn_math_cases.py"
    spec = importlib.util.spec_from_file_location("make_dcn_math_cases", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    committed = mod.PATH.read_text().splitlines()
    fresh = mod.render().splitlines()
    assert len(committed) == len(fresh) > 50
    for a, b in zip(committed[1:], fresh[1:]):
        va, vb = [float(t) for t in a.split()], [float(t) for t in b.split()]
        assert all(abs(x - y) <= 1e-12 * max(1.0, abs(y)) for x, y in zip(va, vb)), (a, b)
