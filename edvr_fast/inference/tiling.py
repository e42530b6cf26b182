"""Spatial tiling of EDVR inference for frames too large for memory, with seams blended by linear ramps.

Owns the tile layout (aligned starts, guaranteed overlap), the blend weights and the overlap default.

Exactness: EDVR pads to a multiple of `params.pad_multiple` and downsamples by that factor, so it is
translation-equivariant only for shifts by that multiple; every tile therefore starts on that grid. An
output pixel farther than the receptive radius r from a tile's inner edges is then exactly what the
untiled run gives. With an overlap N >= 2r + 1 each tile's blend weight is zero within r of its inner
edges and ramps up over the remaining N - 2r pixels, so the blended result equals the untiled one (up
to float rounding). With a smaller overlap the ramps use the middle half of the overlap: not exact,
but the seams are blended instead of cut.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from edvr_fast.errors import InputError
from edvr_fast.models import EDVRParams, receptive_radius

# Ramp width added to 2r by the default overlap: wide enough for a visible seam to fade, small next to r.
DEFAULT_RAMP = 16


def default_overlap(params: EDVRParams, tile: int | None = None) -> int:
    """The exact overlap 2r + DEFAULT_RAMP (rounded up to the tile grid), capped at half the tile.

    The cap keeps a small tile useful for the presets whose bound is huge (deblurring: r > 700); the
    result is then blended, not exact, which `is_exact` reports.
    """
    align = params.pad_multiple
    exact = math.ceil((2 * receptive_radius(params) + DEFAULT_RAMP) / align) * align
    if tile is not None and exact > tile // 2:
        return max(0, (tile // 2) // align * align)
    return exact


def is_exact(params: EDVRParams, overlap: int) -> bool:
    """Whether tiles overlapping by `overlap` input pixels reproduce the untiled output."""
    return overlap >= 2 * receptive_radius(params) + 1


def plan_axis(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """[start, end) of the tiles along one axis: starts on multiples of `align`, neighbours overlap by
    at least `overlap`, the first starts at 0 and the last ends at `length` (it may be up to align - 1
    pixels wider than `tile`)."""
    if tile >= length:
        return [(0, length)]
    stride = (tile - overlap) // align * align
    if stride < align:
        raise InputError(
            f"--tile {tile} with --tile-overlap {overlap} leaves no stride (tiles start on multiples of {align})",
            hint=f"use a tile larger than overlap + {align}, or a smaller overlap",
        )
    last = (length - tile) // align * align
    starts = list(range(0, last, stride)) + [last]
    return [(s, min(s + tile, length)) for s in starts[:-1]] + [(last, length)]


def _ramp_split(overlap: int, radius: int) -> tuple[int, int]:
    """(zero margin m, ramp width b) in input pixels for one inner tile edge; 2m + b <= overlap."""
    if overlap >= 2 * radius + 1:
        return radius, overlap - 2 * radius
    b = max(1, math.ceil(overlap / 2))
    return max(0, (overlap - b) // 2), b


def _axis_weight(start: int, end: int, length: int, margin: int, ramp: int, scale: int) -> Tensor:
    """Blend weight along one axis at output resolution: 0 within `margin` of an inner edge, then a ramp."""
    n = (end - start) * scale
    m, b = margin * scale, ramp * scale
    # Pixel-centre ramp values (i - m + 0.5) / b: zero inside the margin, never zero past it, so every
    # pixel keeps a positive total weight from some tile.
    up = ((torch.arange(n, dtype=torch.float64) - m + 0.5) / b).clamp(0, 1)
    w = torch.ones(n, dtype=torch.float64)
    if start > 0:
        w = w * up
    if end < length:
        w = w * up.flip(0)
    return w


@dataclass(frozen=True)
class TilePlan:
    """Tiles of an H x W frame (input pixels) and their blend weights at output resolution."""

    rows: tuple[tuple[int, int], ...]
    cols: tuple[tuple[int, int], ...]
    height: int
    width: int
    scale: int
    margin: int
    ramp: int

    @classmethod
    def make(cls, params: EDVRParams, height: int, width: int, tile: int, overlap: int) -> TilePlan:
        if tile < 1 or overlap < 0:
            raise InputError(f"--tile must be >= 1 and --tile-overlap >= 0, got {tile} and {overlap}")
        align = params.pad_multiple
        rows = plan_axis(height, tile, overlap, align)
        cols = plan_axis(width, tile, overlap, align)
        margin, ramp = _ramp_split(overlap, receptive_radius(params))
        return cls(tuple(rows), tuple(cols), height, width, params.scale, margin, ramp)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def weight(self, row: tuple[int, int], col: tuple[int, int]) -> Tensor:
        """[H_tile * s, W_tile * s] float64 blend weight of one tile (not normalised)."""
        wy = _axis_weight(*row, self.height, self.margin, self.ramp, self.scale)
        wx = _axis_weight(*col, self.width, self.margin, self.ramp, self.scale)
        return wy[:, None] * wx[None, :]


def blend_tiles(plan: TilePlan, run_tile: Callable[[tuple[int, int], tuple[int, int]], Tensor], batch: int,
                device: torch.device) -> Tensor:
    """Blend `run_tile(row, col)` ([batch, 3, rows * s, cols * s], the model's output on that tile of the
    input) over every tile of `plan`: [batch, 3, H*s, W*s] float32 (the one tile's output when untiled)."""
    if len(plan) == 1:
        return run_tile(plan.rows[0], plan.cols[0])
    s, h, w = plan.scale, plan.height, plan.width
    acc = torch.zeros(batch, 3, h * s, w * s, dtype=torch.float32, device=device)
    total = torch.zeros(h * s, w * s, dtype=torch.float32, device=device)
    for row in plan.rows:
        for col in plan.cols:
            out = run_tile(row, col)
            wt = plan.weight(row, col).to(device=device, dtype=torch.float32)
            ys, xs = slice(row[0] * s, row[1] * s), slice(col[0] * s, col[1] * s)
            acc[..., ys, xs] += out.float() * wt
            total[ys, xs] += wt
    return acc / total


def forward_tiled(model: torch.nn.Module, x: Tensor, plan: TilePlan) -> Tensor:
    """Run `model` on [B, T, 3, H, W] tile by tile and blend: [B, 3, H*s, W*s] in x's dtype."""
    h, w = x.shape[-2:]
    if (h, w) != (plan.height, plan.width):
        raise InputError(f"tile plan is for {plan.height}x{plan.width} frames, got {h}x{w}")
    out = blend_tiles(plan, lambda row, col: model(x[..., row[0] : row[1], col[0] : col[1]]), x.shape[0], x.device)
    return out.to(x.dtype)
