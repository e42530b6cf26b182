"""The receptive-field bound holds: an output pixel's gradient never reaches past it, and it is tight-ish."""

from __future__ import annotations

import pytest
import torch

from edvr_fast.models import EDVR, preset, preset_names
from edvr_fast.models.receptive import receptive_field, receptive_radius


def _support_radius(model: EDVR, size: int) -> tuple[int, int]:
    """(farthest input pixel, in rows/cols, that moves the centre output pixel; its position)."""
    x = torch.rand(1, model.params.num_frame, 3, size, size, requires_grad=True)
    out = model(x)
    c = out.shape[-1] // 2
    out[0, :, c, c].sum().backward()
    hit = x.grad.abs().sum(dim=(0, 1, 2)) > 0
    rows, cols = hit.any(1).nonzero().flatten(), hit.any(0).nonzero().flatten()
    pos = c / model.params.scale
    far = max((rows - pos).abs().max().item(), (cols - pos).abs().max().item())
    return far, int(rows.min().item())


@pytest.mark.parametrize("kw,max_offset", [
    (dict(scale=1), None),
    (dict(scale=2, with_tsa=False), 1.5),
    (dict(scale=1, with_predeblur=True), 1.5),
    (dict(scale=1, hr_in=True, with_predeblur=True), None),
])
def test_gradient_stays_inside_the_bound(tiny, scramble, kw, max_offset):
    model = EDVR(tiny(max_offset=max_offset, **kw))
    scramble(model, std=0.3 if max_offset else 0.1)  # large offsets saturate the clamp
    r = receptive_radius(model.params)
    size = 2 * r + 24 + (16 - (2 * r + 24) % 16)  # room for the whole window, no padding
    far, first_row = _support_radius(model, size)
    assert first_row > 0  # the window did not hit the border: the check below is real
    assert far <= r
    assert far >= 0.6 * r  # and the bound is not wildly loose


def test_max_offset_widens_the_bound_and_presets_are_ordered():
    m = preset("edvr-m-sr4")
    assert receptive_radius(m.replace(max_offset=4.0)) > receptive_radius(m)
    assert receptive_field(m) == 2 * receptive_radius(m) + 1
    assert receptive_radius(preset("edvr-l-sr4")) > receptive_radius(m)
    assert receptive_radius(preset("edvr-l-deblur")) > receptive_radius(preset("edvr-l-sr4"))
    assert all(receptive_radius(preset(n)) > 0 for n in preset_names())
