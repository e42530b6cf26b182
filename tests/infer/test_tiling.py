"""Tiled inference equals untiled when the overlap covers the receptive field; the layout and blend rules."""

from __future__ import annotations

import pytest
import torch

from edvr_fast.errors import InputError
from edvr_fast.inference.ensemble import ensemble_forward
from edvr_fast.inference.tiling import TilePlan, default_overlap, forward_tiled, is_exact, plan_axis
from edvr_fast.models import receptive_radius


@pytest.mark.parametrize("length, tile, overlap, align", [(120, 100, 88, 4), (50, 20, 8, 4), (203, 64, 16, 16)])
def test_plan_axis_covers_with_overlap_on_grid(length, tile, overlap, align):
    tiles = plan_axis(length, tile, overlap, align)
    assert tiles[0][0] == 0 and tiles[-1][1] == length
    for (s0, e0), (s1, _) in zip(tiles, tiles[1:]):
        assert s1 % align == 0 and s0 < s1
        assert e0 - s1 >= overlap
    assert all(e - s <= tile + align - 1 for s, e in tiles)


def test_plan_axis_rejects_overlap_leaving_no_stride():
    with pytest.raises(InputError, match="stride"):
        plan_axis(200, 40, 38, 4)


def test_blend_weights_are_positive_everywhere_and_zero_near_inner_edges(tiny):
    params = tiny(with_tsa=False, max_offset=1.0).params
    r = receptive_radius(params)
    plan = TilePlan.make(params, 60, 300, 2 * r + 20, 2 * r + 8)
    total = torch.zeros(60 * 4, 300 * 4, dtype=torch.float64)
    for row in plan.rows:
        for col in plan.cols:
            w = plan.weight(row, col)
            if col[0] > 0:
                assert torch.all(w[:, : r * 4] == 0)  # output pixels that saw the cut are never used
            total[row[0] * 4 : row[1] * 4, col[0] * 4 : col[1] * 4] += w
    assert len(plan.cols) > 1 and torch.all(total > 0)


def test_tiled_equals_untiled_when_overlap_covers_receptive_field(tiny):
    model = tiny(std=0.1, with_tsa=False, max_offset=1.0, scale=2)  # max_offset makes the radius a true bound
    r = receptive_radius(model.params)
    overlap = 2 * r + 8
    assert is_exact(model.params, overlap)
    torch.manual_seed(0)
    x = torch.rand(1, 3, 3, 110, 114)  # not a multiple of 4: the edge tiles pad like the whole frame
    with torch.no_grad():
        full = model(x)
        plan = TilePlan.make(model.params, 110, 114, overlap + 8, overlap)
        assert len(plan.rows) > 1 and len(plan.cols) > 1
        tiled = forward_tiled(model, x, plan)
        # Too little overlap: blended but visibly different, so this comparison can fail.
        rough = forward_tiled(model, x, TilePlan.make(model.params, 110, 114, 64, 8))
    assert tiled.shape == full.shape == (1, 3, 220, 228)
    assert (tiled - full).abs().max().item() < 1e-4
    assert (rough - full).abs().max().item() > 1e-3, (rough - full).abs().max().item()


def test_default_overlap_is_exact_or_capped_at_half_the_tile(tiny):
    params = tiny().params
    r = receptive_radius(params)
    assert default_overlap(params) >= 2 * r + 1 and default_overlap(params) % params.pad_multiple == 0
    assert is_exact(params, default_overlap(params))
    assert default_overlap(params, tile=64) == 32


def test_ensemble_of_symmetric_function_is_identity_and_output_shape():
    x = torch.rand(2, 3, 3, 10, 14)
    out = ensemble_forward(lambda t: t[:, 1] * 2, x)
    assert out.shape == (2, 3, 10, 14)
    assert torch.allclose(out, x[:, 1] * 2)


def test_ensemble_averages_the_eight_orientations():
    # A function that only sees its input's top-left pixel: averaged over the 8 symmetries it sees
    # each of the four corners twice.
    x = torch.zeros(1, 1, 1, 4, 6)
    x[..., 0, 0], x[..., 0, -1], x[..., -1, 0], x[..., -1, -1] = 1.0, 2.0, 3.0, 4.0
    out = ensemble_forward(lambda t: t[:, 0, :, :1, :1].expand(-1, -1, t.shape[-2], t.shape[-1]), x)
    assert torch.allclose(out, torch.full((1, 1, 4, 6), 2.5))


def test_ensemble_with_model_is_close_to_plain_and_in_range(tiny):
    model = tiny()
    x = torch.rand(1, 3, 3, 16, 20)
    with torch.no_grad():
        plain = model(x)
        ens = ensemble_forward(model, x)
    assert ens.shape == plain.shape == (1, 3, 64, 80)
    assert torch.isfinite(ens).all()
    assert not torch.allclose(ens, plain)  # the random model is not symmetric: averaging changed something
    # Both are the bilinear base plus a small residual, so they stay close.
    assert (ens - plain).abs().mean() < (plain - plain.mean()).abs().mean()
