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
