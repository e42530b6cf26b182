"""The opt-in NHWC CUDA kernel (EDVR_FAST_DCN_KERNEL=nhwc on a CUDA device) against the float64 fallback:
output and every gradient in fp32, TF32, bf16 and fp16, NCHW and channels_last, and that it is what runs."""

from __future__ import annotations

import contextlib

import pytest
import torch
from dcn_reference import make_case

from edvr_fast.ops import backend, fallback, modulated_deform_conv2d

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available() or backend()["cuda"] != "cuda-kernel",
    reason="needs a CUDA device and edvr_fast._C built with its CUDA kernels")]

TOL = {"fp32": 1e-5, "tf32": 5e-3, "bf16": 1e-2, "fp16": 1e-2, "fp64": 1e-12}
DTYPE = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
         "fp64": torch.float64}

SHAPES = {
    # 8 channels per offset group: one sample per 8-channel segment, vector loads and atomics
    "pcd 64ch g8": dict(N=4, C=64, Co=64, H=16, W=16, kh=3, kw=3, offset_groups=8),
    "batch 1 odd": dict(N=1, C=32, Co=24, H=13, W=17, kh=3, kw=3, offset_groups=2, offset_scale=8.0),
    "batch 80": dict(N=80, C=16, Co=16, H=7, W=9, kh=3, kw=3, offset_groups=2),
    "far outside": dict(N=2, C=16, Co=16, H=12, W=10, kh=3, kw=3, offset_groups=1, offset_scale=40.0),
    # segments crossing offset groups (4 channels per group), conv groups, stride / dilation / padding
    "groups, strided": dict(N=3, C=16, Co=8, H=11, W=9, kh=3, kw=3, stride=(2, 1), padding=(2, 1),
                            dilation=(1, 2), groups=2, offset_groups=4),
    "12 channels, 2x3": dict(N=2, C=12, Co=7, H=8, W=6, kh=2, kw=3, offset_groups=3, bias=False),
    "whole pixels": dict(N=2, C=16, Co=8, H=7, W=8, kh=3, kw=3, offset_groups=2, integer_offsets=True),
}


def _rel(a, ref):
    return float((a.detach().double() - ref).norm() / ref.norm().clamp_min(1e-30))


@contextlib.contextmanager
def _tf32(enabled: bool):
    """TF32 on or off for this block (assigned and restored: pytest's monkeypatch.setattr cannot undo these
    module properties)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _check(monkeypatch, shape, precision, channels_last, seed=11):
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", "nhwc")
    with _tf32(precision == "tf32"):
        _check_run(shape, precision, channels_last, seed)


def _check_run(shape, precision, channels_last, seed):
    dtype = DTYPE[precision]
    args64, conv = make_case(**shape, seed=seed, device="cuda")
    # The reference sees the inputs rounded to the kernel's dtype, so only the kernel's arithmetic is measured.
    ref_args = [a.to(dtype).double() if a is not None else None for a in args64]
    s, p, d, gr, og = conv["stride"], conv["padding"], conv["dilation"], conv["groups"], conv["offset_groups"]
    ref = fallback.forward(*ref_args, s, p, d, gr, og)
    g = torch.randn_like(ref).to(dtype)
    ref_grads = fallback.backward(g.double(), *ref_args[:4], s, p, d, gr, og)
    low = [a.to(dtype) if a is not None else None for a in args64]
    if channels_last:
        low[:3] = [a.contiguous(memory_format=torch.channels_last) for a in low[:3]]
    low = [a.requires_grad_() if a is not None else None for a in low]
    out = modulated_deform_conv2d(*low, **conv)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.dtype == dtype and out.is_contiguous(memory_format=fmt)
    out.backward(g.contiguous(memory_format=fmt))
    errs = {"out": _rel(out, ref)}
    for name, t, r in zip(("input", "offset", "mask", "weight", "bias"), low, ref_grads):
        if t is not None:
            errs[name] = _rel(t.grad, r)
    bad = {k: v for k, v in errs.items() if not v < TOL[precision]}
    assert not bad, f"{precision} {shape}: relative errors over {TOL[precision]}: {bad}"
    assert low[0].grad.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_nhwc_cuda_matches_float64_fallback(monkeypatch, shape, precision, channels_last):
    _check(monkeypatch, SHAPES[shape], precision, channels_last)


def test_nhwc_cuda_float64(monkeypatch):
    _check(monkeypatch, SHAPES["groups, strided"], "fp64", True)


def _cuda_kernel_names(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return {e.name for e in prof.events()}


@pytest.mark.parametrize("kernel", ["nhwc", "columns"])
def test_the_selected_kernel_runs(monkeypatch, kernel):
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", kernel)
    args, conv = make_case(N=2, C=16, Co=16, H=9, W=9, kh=3, kw=3, offset_groups=2, dtype=torch.float32,
                           device="cuda")
    x, off, m, w, b = (a.requires_grad_() for a in args)
    names = _cuda_kernel_names(lambda: modulated_deform_conv2d(x, off, m, w, b, **conv).sum().backward())
    ours = [n for n in names if "nhwc_cuda" in n]
    columns = [n for n in names if "columns_kernel" in n or "columns_backward_kernel" in n]
    if kernel == "nhwc":
        assert len(ours) >= 3 and not columns, sorted(names)  # forward, grad_weight, backward_data
    else:
        assert columns and not ours, sorted(names)


def test_nhwc_cuda_deterministic_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", "nhwc")
    args, conv = make_case(N=1, C=16, Co=8, H=6, W=6, kh=3, kw=3, offset_groups=2, dtype=torch.float32,
                           device="cuda")
    x, off, m, w, b = (a.requires_grad_() for a in args)
    torch.use_deterministic_algorithms(True)
    try:
        out = modulated_deform_conv2d(x, off, m, w, b, **conv)  # the forward has no atomics
        with pytest.raises(RuntimeError, match="EDVR_FAST_DCN_KERNEL=nhwc"):
            out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(False)


def test_nhwc_cuda_opcheck(monkeypatch):
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", "nhwc")
    args, conv = make_case(N=2, C=16, Co=8, H=7, W=6, kh=3, kw=3, offset_groups=2, dtype=torch.float32,
                           device="cuda")
    x, off, m, w, b = (a.contiguous(memory_format=torch.channels_last) if i < 3 else a
                       for i, a in enumerate(args))
    x, off, m, w, b = (a.requires_grad_() for a in (x, off, m, w, b))
    torch.library.opcheck(torch.ops.edvr_fast.modulated_deform_conv2d.default,
                          (x, off, m, w, b, [1, 1], [1, 1], [1, 1], 1, 2))
