"""The registered operator (fallback kernel on CPU) against a plain-loop float64 reference."""

from __future__ import annotations

import pytest
import torch
from dcn_reference import make_case, naive_mdcn

from edvr_fast.ops import modulated_deform_conv2d

CASES = {
    "3x3 pad1 og1": dict(N=2, C=4, Co=3, H=7, W=6, kh=3, kw=3),
    "stride2": dict(N=2, C=4, Co=4, H=9, W=8, kh=3, kw=3, stride=(2, 2)),
    "dilation2": dict(N=1, C=4, Co=2, H=8, W=9, kh=3, kw=3, dilation=(2, 2), padding=(2, 2)),
    "groups2": dict(N=2, C=4, Co=6, H=6, W=5, kh=3, kw=3, groups=2),
    "offset_groups2": dict(N=1, C=4, Co=3, H=6, W=7, kh=3, kw=3, offset_groups=2),
    "offset_groups8": dict(N=1, C=8, Co=4, H=5, W=5, kh=3, kw=3, offset_groups=8),
    "non-square 2x3": dict(N=1, C=2, Co=3, H=7, W=5, kh=2, kw=3, padding=(0, 1)),
    "odd sizes, mixed stride": dict(N=1, C=3, Co=2, H=11, W=5, kh=3, kw=1, stride=(2, 1), padding=(1, 0)),
    "far outside": dict(N=1, C=2, Co=2, H=5, W=6, kh=3, kw=3, offset_scale=25.0),
    "no bias": dict(N=1, C=2, Co=2, H=4, W=4, kh=3, kw=3, bias=False),
    "batch 33": dict(N=33, C=2, Co=2, H=4, W=3, kh=3, kw=3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_matches_plain_loop_reference(name):
    args, conv = make_case(**CASES[name], seed=hash(name) % 1000)
    out = modulated_deform_conv2d(*args, **conv)
    ref = naive_mdcn(*args, **conv)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mask_mode", ["zeros", "ones"])
def test_zero_and_one_masks(mask_mode):
    args, conv = make_case(N=2, C=4, Co=3, H=6, W=6, kh=3, kw=3, offset_groups=2, mask_mode=mask_mode)
    out = modulated_deform_conv2d(*args, **conv)
    torch.testing.assert_close(out, naive_mdcn(*args, **conv), rtol=1e-10, atol=1e-10)
    if mask_mode == "zeros":  # only the bias is left
        torch.testing.assert_close(out, args[4].view(1, -1, 1, 1).expand_as(out))


def test_zero_offset_one_mask_is_plain_convolution():
    args, conv = make_case(N=2, C=4, Co=6, H=9, W=7, kh=3, kw=3, stride=(2, 1), dilation=(1, 2),
                           padding=(1, 2), groups=2, offset_groups=2, mask_mode="ones")
    x, off, m, w, b = args
    out = modulated_deform_conv2d(x, torch.zeros_like(off), m, w, b, **conv)
    ref = torch.nn.functional.conv2d(x, w, b, conv["stride"], conv["padding"], conv["dilation"],
                                     conv["groups"])
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_integer_offset_shifts_the_image():
    """A whole-pixel offset (dy=1, dx=-2) on a 1x1 kernel reads the shifted pixel, zero past the border."""
    x = torch.arange(30, dtype=torch.float64).view(1, 1, 5, 6)
    off = torch.zeros(1, 2, 5, 6, dtype=torch.float64)
    off[:, 0], off[:, 1] = 1.0, -2.0
    out = modulated_deform_conv2d(x, off, torch.ones(1, 1, 5, 6, dtype=torch.float64),
                                  torch.ones(1, 1, 1, 1, dtype=torch.float64))
    expect = torch.zeros(5, 6, dtype=torch.float64)
    expect[:4, 2:] = x[0, 0, 1:, :4]
    torch.testing.assert_close(out[0, 0], expect)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_close_to_float64(dtype):
    args, conv = make_case(N=2, C=8, Co=8, H=8, W=8, kh=3, kw=3, offset_groups=2)
    ref = modulated_deform_conv2d(*args, **conv)
    low = [a.to(dtype) if a is not None else None for a in args]
    out = modulated_deform_conv2d(*low, **conv)
    assert out.dtype == dtype
    rel = (out.double() - ref).norm() / ref.norm()
    assert rel < (1e-6 if dtype == torch.float32 else 2e-2)


def test_nan_and_huge_offsets_sample_zero():
    args, conv = make_case(N=1, C=2, Co=2, H=5, W=5, kh=3, kw=3, bias=False)
    x, off, m, w, _ = args
    off = off.clone()
    off[:, :, 1, 1] = float("nan")
    off[:, :, 2, 2] = 1e30
    out = modulated_deform_conv2d(x, off, m, w, None, **conv)
    assert torch.isfinite(out).all()
    assert (out[:, :, 1, 1] == 0).all() and (out[:, :, 2, 2] == 0).all()
