"""The compiled kernels (CPU always, CUDA on a GPU machine) against the float64 fallback.

CPU cases run wherever `edvr_fast._C` is built; CUDA cases carry the `gpu` mark and skip without a device.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import torch
from dcn_reference import make_case

from edvr_fast.ops import backend, fallback, modulated_deform_conv2d


def _compiled(device: str) -> bool:
    return backend()[device] == f"{device}-kernel"


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])
CPU = pytest.param("cpu", marks=pytest.mark.skipif(
    not _compiled("cpu"), reason="edvr_fast._C CPU kernel not built or fallback forced"))
DEVICES = [CPU, CUDA]

TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).norm() / ref.norm().clamp_min(1e-30))


def _random_shape(rng: random.Random, N: int) -> dict:
    kh, kw = rng.choice([(3, 3), (3, 3), (1, 1), (2, 3), (3, 1), (5, 5)])
    groups = rng.choice([1, 1, 2])
    offset_groups = rng.choice([1, 2, 4, 8])
    C = 8 * rng.choice([1, 2, 4]) * groups
    while C % offset_groups:
        offset_groups //= 2
    dil = (rng.choice([1, 2]), rng.choice([1, 2]))
    H, W = rng.randint(dil[0] * (kh - 1) + 1, 23), rng.randint(dil[1] * (kw - 1) + 1, 23)
    return dict(N=N, C=C, Co=groups * rng.choice([4, 8, 16]), H=H, W=W, kh=kh, kw=kw,
                stride=(rng.choice([1, 2]), rng.choice([1, 2])), padding=(rng.randint(0, 2), rng.randint(0, 2)),
                dilation=dil, groups=groups, offset_groups=offset_groups, offset_scale=rng.choice([0.5, 2.0, 8.0]))


def _check_against_reference(shape: dict, dtype: torch.dtype, seed: int, device: str) -> None:
    args64, conv = make_case(**shape, seed=seed, device=device)
    # The reference sees exactly the inputs the kernel sees (rounded to `dtype`), so that only the kernel's
    # arithmetic is measured: an offset rounded across an integer changes the bilinear gradient itself.
    args64 = tuple(a.to(dtype).double() if a is not None else None for a in args64)
    stride, padding, dilation = conv["stride"], conv["padding"], conv["dilation"]
    x, off, m, w, b = args64
    ref_out = fallback.forward(x, off, m, w, b, stride, padding, dilation, conv["groups"], conv["offset_groups"])
    g = torch.randn_like(ref_out)
    ref_grads = fallback.backward(g, x, off, m, w, stride, padding, dilation, conv["groups"], conv["offset_groups"])
    low = [a.to(dtype).requires_grad_() if a is not None else None for a in args64]
    out = modulated_deform_conv2d(*low, **conv)
    assert out.dtype == dtype
    out.backward(g.to(dtype))
    tol = TOL[dtype]
    if dtype != torch.float32:  # the incoming gradient is rounded too
        gd = g.to(dtype).double()
        ref_grads = fallback.backward(gd, x, off, m, w, stride, padding, dilation, conv["groups"],
                                      conv["offset_groups"])
    errs = {"out": _rel(out, ref_out)}
    for name, t, r in zip(("input", "offset", "mask", "weight", "bias"), low, ref_grads):
        if t is not None:
            errs[name] = _rel(t.grad, r)
    bad = {k: v for k, v in errs.items() if not v < tol}
    assert not bad, f"{dtype} {shape}: relative errors over {tol}: {bad}"


@pytest.mark.parametrize("device", DEVICES)
def test_backend_is_compiled_kernel(device):
    assert backend()[device] == f"{device}-kernel"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("N", [1, 80])
@pytest.mark.parametrize("device", DEVICES)
def test_random_shapes_against_float64(dtype, N, device):
    rng = random.Random(1000 + N)
    for i in range(6 if device == "cuda" else 3):
        _check_against_reference(_random_shape(rng, N), dtype, seed=i, device=device)


@pytest.mark.parametrize("shape", [
    dict(N=16, C=64, Co=64, H=32, W=32, kh=3, kw=3, offset_groups=8),  # PCD L2, training batch
    dict(N=2, C=16, Co=16, H=12, W=10, kh=3, kw=3, offset_groups=8, offset_scale=40.0),  # far outside
    dict(N=3, C=8, Co=8, H=9, W=9, kh=3, kw=3, mask_mode="zeros"),
    dict(N=4, C=16, Co=8, H=7, W=8, kh=3, kw=3, offset_groups=4, integer_offsets=True),
    dict(N=3, C=8, Co=8, H=9, W=9, kh=3, kw=3, mask_mode="ones", bias=False),
])
@pytest.mark.parametrize("device", DEVICES)
def test_named_shapes_fp32(shape, device):
    _check_against_reference(shape, torch.float32, seed=7, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_float64_gradcheck(device):
    args, conv = make_case(N=2, C=4, Co=4, H=5, W=6, kh=3, kw=3, offset_groups=2, device=device)
    x, off, m, w, b = (a.requires_grad_() for a in args)
    # Offsets well inside pixels: finite differences must not cross a whole pixel (bilinear kinks).
    with torch.no_grad():
        off.copy_(off.floor() + 0.25 + 0.5 * torch.rand_like(off))
    # CUDA accumulates grad_input with atomics: two backward passes may differ in the last bits.
    assert torch.autograd.gradcheck(lambda *t: modulated_deform_conv2d(*t, **conv), (x, off, m, w, b),
                                    eps=1e-6, atol=1e-6, nondet_tol=1e-12 if device == "cuda" else 0.0)


@pytest.mark.parametrize("device", DEVICES)
def test_chunked_batch_matches(monkeypatch, device):
    """A column budget smaller than one batch forces several chunks; results must not change."""
    shape = dict(N=37, C=16, Co=8, H=11, W=13, kh=3, kw=3, offset_groups=4)
    monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", "columns")  # the kernel with a column budget (CPU: not the default)
    monkeypatch.setenv("EDVR_FAST_DCN_COLUMN_BUDGET_MB", "0.05")
    _check_against_reference(shape, torch.float32, seed=3, device=device)


@pytest.mark.parametrize("device", DEVICES)
def test_against_torchvision_fp32(device):
    tv = pytest.importorskip("torchvision.ops")
    args, conv = make_case(N=4, C=32, Co=16, H=17, W=19, kh=3, kw=3, offset_groups=4, dtype=torch.float32,
                           device=device, stride=(2, 1), dilation=(1, 2), padding=(1, 2))
    x, off, m, w, b = (a.requires_grad_() for a in args)
    ours = modulated_deform_conv2d(x, off, m, w, b, **conv)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (x, off, m, w, b), g)
    theirs = tv.deform_conv2d(x, off, w, b, conv["stride"], conv["padding"], conv["dilation"], mask=m)
    tgrads = torch.autograd.grad(theirs, (x, off, m, w, b), g)
    assert _rel(ours, theirs.double()) < 1e-5
    for a, t in zip(grads, tgrads):
        assert _rel(a, t.double()) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    args, conv = make_case(N=2, C=8, Co=8, H=7, W=6, kh=3, kw=3, offset_groups=2, dtype=torch.float32,
                           device=device)
    x, off, m, w, b = (a.requires_grad_() for a in args)
    torch.library.opcheck(torch.ops.edvr_fast.modulated_deform_conv2d.default,
                          (x, off, m, w, b, [1, 1], [1, 1], [1, 1], 1, 2))


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_bf16_is_native(device):
    args, conv = make_case(N=2, C=16, Co=16, H=9, W=9, kh=3, kw=3, offset_groups=2, dtype=torch.float32,
                           device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        out = modulated_deform_conv2d(*args, **conv)
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("device", [CPU])
def test_cpu_backward_is_deterministic(device):
    """The CPU backward gives each (image, offset group) to one thread: bitwise equal runs, allowed in
    deterministic mode."""
    args, conv = make_case(N=6, C=16, Co=8, H=13, W=11, kh=3, kw=3, offset_groups=2, dtype=torch.float32)
    torch.use_deterministic_algorithms(True)
    try:
        grads = []
        for _ in range(2):
            x, off, m, w, b = (a.clone().requires_grad_() for a in args)
            modulated_deform_conv2d(x, off, m, w, b, **conv).square().sum().backward()
            grads.append([t.grad for t in (x, off, m, w, b)])
    finally:
        torch.use_deterministic_algorithms(False)
    for a, c in zip(*grads):
        assert torch.equal(a, c)


@pytest.mark.parametrize("device", [CPU])
def test_cpu_kernel_error_names_the_problem(device):
    """The raw op, past the Python checks: the C++ check raises a RuntimeError naming the shapes. In a
    child process, because a build that carries its own static libstdc++ (seen on one GPU machine's image;
    setup.py now refuses such a compiler) turns this into a crash, which must fail this test, not end the
    test session."""
    code = ("import torch, edvr_fast.ops\n"
            "x = torch.randn(1, 8, 6, 6); off = torch.randn(1, 4, 6, 6); m = torch.rand(1, 9, 6, 6)\n"
            "torch.ops.edvr_fast.modulated_deform_conv2d(x, off, m, torch.randn(8, 8, 3, 3), None,"
            " [1, 1], [1, 1], [1, 1], 1, 1)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "offset must have shape [1, 18, 6, 6], got [1, 4, 6, 6]" in proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_deterministic_mode_raises_on_backward():
    args, conv = make_case(N=1, C=8, Co=8, H=6, W=6, kh=3, kw=3, dtype=torch.float32, device="cuda")
    x, off, m, w, b = (a.requires_grad_() for a in args)
    out = modulated_deform_conv2d(x, off, m, w, b, **conv)
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError, match="modulated_deform_conv2d_backward"):
            out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compile_fullgraph_cuda():
    from edvr_fast.ops import DCNPack

    mod = DCNPack(16, 16, 3, padding=1, offset_groups=4).cuda()
    torch.nn.init.normal_(mod.conv_offset.weight, std=0.05)
    x, feat = torch.randn(2, 16, 12, 12, device="cuda"), torch.randn(2, 16, 12, 12, device="cuda")
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # the offset conv must not differ between eager and compiled
    try:
        eager = mod(x, feat)
        out = torch.compile(mod, fullgraph=True)(x, feat)
    finally:
        torch.backends.cudnn.allow_tf32 = old
    assert _rel(out, eager.double()) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_large_batch_no_atomic_blowup():
    """Batch 64 at PCD L1 size must run and agree with the fallback on a slice (no 32-image chunk bugs)."""
    if os.environ.get("EDVR_FAST_SKIP_LARGE") == "1":
        pytest.skip("EDVR_FAST_SKIP_LARGE=1")
    args, conv = make_case(N=64, C=64, Co=64, H=64, W=64, kh=3, kw=3, offset_groups=8, dtype=torch.float32,
                           device="cuda")
    out = modulated_deform_conv2d(*args, **conv)
    x, off, m, w, b = args
    sl = [t[40:42].double() for t in (x, off, m)] + [w.double(), b.double()]
    ref = fallback.forward(*sl, conv["stride"], conv["padding"], conv["dilation"], 1, 8)
    assert _rel(out[40:42], ref) < 1e-5
