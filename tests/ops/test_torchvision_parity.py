"""Same function as torchvision.ops.deform_conv2d (with mask), forward and every gradient, on the CPU."""

from __future__ import annotations

import pytest
import torch
from dcn_reference import make_case

from edvr_fast.ops import modulated_deform_conv2d

tv_ops = pytest.importorskip("torchvision.ops", reason="torchvision is not installed (pip install .[test])")


@pytest.mark.parametrize("shape", [
    dict(N=2, C=8, Co=4, H=9, W=7, kh=3, kw=3, offset_groups=2),
    dict(N=1, C=4, Co=6, H=10, W=11, kh=3, kw=2, stride=(2, 1), dilation=(1, 2), padding=(1, 2), groups=2),
    dict(N=3, C=8, Co=8, H=6, W=6, kh=3, kw=3, offset_groups=8, offset_scale=10.0),
    dict(N=35, C=2, Co=2, H=4, W=5, kh=3, kw=3),
])
def test_matches_torchvision(shape):
    args, conv = make_case(**shape, seed=11)
    x, off, m, w, b = (a.clone().requires_grad_() for a in args)
    ours = modulated_deform_conv2d(x, off, m, w, b, **conv)
    g = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, (x, off, m, w, b), g)
    theirs = tv_ops.deform_conv2d(x, off, w, b, conv["stride"], conv["padding"], conv["dilation"], mask=m)
    theirs_grads = torch.autograd.grad(theirs, (x, off, m, w, b), g)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    for name, a, t in zip(("input", "offset", "mask", "weight", "bias"), ours_grads, theirs_grads):
        torch.testing.assert_close(a, t, rtol=1e-8, atol=1e-8, msg=f"grad {name} differs")


def test_whole_pixel_offsets_at_the_border_match_torchvision():
    """Whole-pixel offsets, many landing on the border rows and columns.

    One documented difference: a sample exactly at y = -1 or x = -1 has no offset gradient under the DCNv2
    rule (ours, and the DCNv2 code EDVR was trained with), while torchvision differentiates it one-sidedly.
    """
    args, conv = make_case(N=2, C=4, Co=4, H=6, W=7, kh=3, kw=3, offset_groups=2, seed=5)
    x, off, m, w, b = args
    off = torch.randint(-3, 4, off.shape, generator=torch.Generator().manual_seed(2)).double()
    x, off, m, w, b = (t.clone().requires_grad_() for t in (x, off, m, w, b))
    ours = modulated_deform_conv2d(x, off, m, w, b, **conv)
    g = torch.randn_like(ours)
    ours_grads = torch.autograd.grad(ours, (x, off, m, w, b), g)
    theirs = tv_ops.deform_conv2d(x, off, w, b, conv["stride"], conv["padding"], conv["dilation"], mask=m)
    theirs_grads = torch.autograd.grad(theirs, (x, off, m, w, b), g)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)
    # taps whose sample sits exactly on row -1 or column -1
    N, _, Ho, Wo = ours.shape
    o = off.detach().view(N, 2, 9, 2, Ho, Wo)
    i = torch.arange(3).repeat_interleave(3).view(1, 1, 9, 1, 1).double()
    j = torch.arange(3).repeat(3).view(1, 1, 9, 1, 1).double()
    ys = torch.arange(Ho).view(1, 1, 1, Ho, 1) - 1 + i + o[:, :, :, 0]
    xs = torch.arange(Wo).view(1, 1, 1, 1, Wo) - 1 + j + o[:, :, :, 1]
    on_minus_one = ((ys == -1) & (xs > -1) & (xs < Wo)) | ((xs == -1) & (ys > -1) & (ys < Ho))
    assert on_minus_one.any(), "the test must exercise the -1 border"
    keep = ~on_minus_one.unsqueeze(3).expand(N, 2, 9, 2, Ho, Wo).reshape(off.shape)
    assert (ours_grads[1][~keep] == 0).all()
    torch.testing.assert_close(ours_grads[1][keep], theirs_grads[1][keep], rtol=1e-8, atol=1e-8)
    for name, a, t in zip(("input", "mask", "weight", "bias"), ours_grads[:1] + ours_grads[2:],
                          theirs_grads[:1] + theirs_grads[2:]):
        torch.testing.assert_close(a, t, rtol=1e-8, atol=1e-8, msg=f"grad {name} differs")
