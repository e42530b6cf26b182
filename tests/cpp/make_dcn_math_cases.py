"""Writes tests/cpp/dcn_math_cases.txt: bilinear values and offset gradients from the Python operator.

The C++ host test (ctest) checks csrc/ops/cuda/modulated_deform_conv_math.cuh against these numbers;
tests/ops/test_dcn_math_cases.py checks that this file still matches the operator.
Run: python tests/cpp/make_dcn_math_cases.py
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

HEADER = "# H W y x value dvalue_dy dvalue_dx ; plane[r][c] = sin(0.7*r + 1.3*c + 0.4) + 0.1*r"
PATH = Path(__file__).with_name("dcn_math_cases.txt")


def plane(H: int, W: int) -> torch.Tensor:
    r = torch.arange(H, dtype=torch.float64).view(H, 1)
    c = torch.arange(W, dtype=torch.float64).view(1, W)
    return torch.sin(0.7 * r + 1.3 * c + 0.4) + 0.1 * r


def sample(H: int, W: int, y: float, x: float) -> tuple[float, float, float]:
    """Value and offset gradient at (y, x), through the registered operator (1x1 kernel, output pixel 0,0)."""
    import edvr_fast.ops  # noqa: F401  (registers the operator)

    inp = plane(H, W).view(1, 1, H, W)
    off = torch.zeros(1, 2, H, W, dtype=torch.float64)
    off[0, 0, 0, 0], off[0, 1, 0, 0] = y, x
    mask = torch.ones(1, 1, H, W, dtype=torch.float64)
    w = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    out = torch.ops.edvr_fast.modulated_deform_conv2d(inp, off, mask, w, None, [1, 1], [0, 0], [1, 1], 1, 1)
    g = torch.zeros_like(out)
    g[0, 0, 0, 0] = 1.0
    _, g_off, _, _, _ = torch.ops.edvr_fast.modulated_deform_conv2d_backward(
        g, inp, off, mask, w, [1, 1], [0, 0], [1, 1], 1, 1)
    return float(out[0, 0, 0, 0]), float(g_off[0, 0, 0, 0]), float(g_off[0, 1, 0, 0])


def cases() -> list[tuple[int, int, float, float]]:
    rng = random.Random(1234)
    out = []
    for H, W in ((5, 7), (1, 4), (6, 1), (9, 9)):
        fixed = [(0.0, 0.0), (H - 1.0, W - 1.0), (-0.5, 2.25), (H - 0.5, 0.5), (-1.0, 0.0), (0.0, -1.0),
                 (H + 0.0, 1.0), (1.5, W + 0.0), (-3.2, -7.9), (H + 4.1, W + 2.2), (-0.999, -0.001),
                 (H - 1.0001, W - 1.0001)]
        out += [(H, W, y, x) for y, x in fixed]
        out += [(H, W, rng.uniform(-2, H + 1), rng.uniform(-2, W + 1)) for _ in range(20)]
    return out


def render() -> str:
    lines = [HEADER]
    for H, W, y, x in cases():
        v, gy, gx = sample(H, W, y, x)
        lines.append(" ".join([str(H), str(W)] + [repr(float(t)) for t in (y, x, v, gy, gx)]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    PATH.write_text(render())
    print(f"wrote {PATH}")
