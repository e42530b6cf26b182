"""The NHWC CPU kernel (the CPU default, EDVR_FAST_DCN_KERNEL=nhwc) and the column kernel it replaced
(=columns, the benchmarks' baseline) against the float64 fallback, channels_last in and out without copies
of the feature map, deterministic backward; and the kernel switch itself."""

from __future__ import annotations

import pytest
import torch
from dcn_reference import make_case

from edvr_fast.ops import backend, fallback, modulated_deform_conv2d

pytestmark = pytest.mark.skipif(backend()["cpu"] != "cpu-kernel", reason="edvr_fast._C CPU kernel not built")

SHAPES = [dict(N=2, C=16, Co=8, H=9, W=11, kh=3, kw=3, offset_groups=2),
          dict(N=1, C=8, Co=4, H=5, W=7, kh=1, kw=1, offset_groups=1),
          dict(N=3, C=16, Co=16, H=10, W=9, kh=3, kw=3, groups=2, offset_groups=4),
          dict(N=9, C=16, Co=8, H=7, W=6, kh=2, kw=3, stride=(2, 1), padding=(2, 1), dilation=(1, 2),
               offset_groups=8, offset_scale=8.0),
          # the implicit GEMM (fp32, one conv group, Co % 8 == 0): partial tiles, a 16 + 8 column panel
          dict(N=2, C=16, Co=24, H=13, W=17, kh=3, kw=3, offset_groups=2),
          dict(N=3, C=64, Co=40, H=11, W=10, kh=3, kw=3, stride=(2, 1), padding=(1, 2), dilation=(2, 1),
               offset_groups=8, offset_scale=6.0, bias=False),
          dict(N=80, C=8, Co=8, H=3, W=5, kh=3, kw=3, offset_groups=1),
          # the NCHW <-> NHWC transposes' row and column tails (12 channels, 45 pixels)
          dict(N=2, C=12, Co=6, H=5, W=9, kh=3, kw=3, offset_groups=3)]


def _rel(a, ref):
    return float((a.double() - ref).norm() / ref.norm().clamp_min(1e-30))


def _run(args, conv, channels_last):
    t = [a.detach().clone() if a is not None else None for a in args]
    if channels_last:
        t[:3] = [a.contiguous(memory_format=torch.channels_last) for a in t[:3]]
    t = [a.requires_grad_() if a is not None else None for a in t]
    out = modulated_deform_conv2d(*t, **conv)
    return out, t


@pytest.mark.parametrize("kernel", ["nhwc", "columns"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_nhwc_kernel_matches_float64_fallback(monkeypatch, shape, dtype, channels_last, kernel):
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", kernel)
    args64, conv = make_case(**shape, seed=5)
    args = [a.to(dtype) if a is not None else None for a in args64]
    x, off, m, w, b = (a.double() if a is not None else None for a in args)
    s, p, d, gr, og = conv["stride"], conv["padding"], conv["dilation"], conv["groups"], conv["offset_groups"]
    ref = fallback.forward(x, off, m, w, b, s, p, d, gr, og)
    g = torch.randn_like(ref)
    ref_grads = fallback.backward(g, x, off, m, w, s, p, d, gr, og)
    out, t = _run(args, conv, channels_last)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    out.backward(g.to(dtype))
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert _rel(out, ref) < tol
    for a, r in zip(t, ref_grads):
        if a is not None:
            assert _rel(a.grad, r) < tol
    if channels_last:
        assert t[0].grad.is_contiguous(memory_format=torch.channels_last)


def test_nhwc_backward_is_deterministic(monkeypatch):
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", "nhwc")
    args, conv = make_case(N=3, C=16, Co=8, H=13, W=11, kh=3, kw=3, offset_groups=2, dtype=torch.float32)
    grads = []
    for _ in range(2):
        out, t = _run(args, conv, False)
        out.square().sum().backward()
        grads.append([a.grad for a in t])
    for a, c in zip(*grads):
        assert torch.equal(a, c)


@pytest.mark.parametrize("kernel", ["nhwc", "columns"])
def test_channels_last_matches_fake_kernel_and_opcheck(monkeypatch, kernel):
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", kernel)
    args, conv = make_case(N=2, C=8, Co=8, H=7, W=6, kh=3, kw=3, offset_groups=2, dtype=torch.float32)
    x, off, m, w, b = (a.contiguous(memory_format=torch.channels_last) if a.dim() == 4 and i < 3 else a
                       for i, a in enumerate(args))
    x, off, m, w, b = (a.requires_grad_() for a in (x, off, m, w, b))
    torch.library.opcheck(torch.ops.edvr_fast.modulated_deform_conv2d.default,
                          (x, off, m, w, b, [1, 1], [1, 1], [1, 1], 1, 2))


def test_nhwc_channels_last_makes_no_copy_of_the_feature_map(monkeypatch):
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", "nhwc")
    args, conv = make_case(N=2, C=16, Co=16, H=24, W=24, kh=3, kw=3, offset_groups=2, dtype=torch.float32)
    out, t = _run(args, conv, True)
    g = torch.randn_like(out).contiguous(memory_format=torch.channels_last)
    feature_map = args[0].numel()
    with torch.profiler.profile(record_shapes=True) as prof:
        out, t = _run(args, conv, True)
        out.backward(g)
    names = {e.name for e in prof.events()}
    assert "edvr_fast::modulated_deform_conv2d" in names
    def numel(shape):
        n = 1
        for v in shape:
            n *= v
        return n

    # Copies of weight-sized tensors (the weight's tap-major permutation) are allowed; of the feature map not.
    copies = [e for e in prof.events() if e.name in ("aten::copy_", "aten::contiguous", "aten::clone")
              and any(isinstance(s, list) and numel(s) >= feature_map for s in e.input_shapes)]
    # _run's own clones happen before the op; inside the op nothing input-sized may be copied.
    inside = [e for e in copies if any(p.name.startswith("edvr_fast::") for p in _parents(e))]
    assert not inside, [e.name for e in inside]


def _parents(e):
    while e.cpu_parent is not None:
        e = e.cpu_parent
        yield e


def test_unknown_kernel_name_is_an_error(monkeypatch):
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", "fastest")
    args, conv = make_case(N=1, C=8, Co=8, H=6, W=6, kh=3, kw=3, dtype=torch.float32)
    with pytest.raises(ValueError, match="EDVR_FAST_DCN_KERNEL=fastest"):
        modulated_deform_conv2d(*args, **conv)
