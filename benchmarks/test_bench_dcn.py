"""DCN operator: ours vs torchvision.ops.deform_conv2d vs cuDNN/oneDNN conv2d of the same shape.

GPU shapes are those of ../shared/TARGETS.md (3x3, 64->64, offset groups 8) plus PCD L1 at batch 64; CPU
shapes are EDVR-M's layer (64->64, 8 offset groups) and the default run's PCD level 1 (16 features, 2 groups).
`ours` is the default kernel (on the CPU the NHWC kernel: an implicit GEMM over per-thread tiles where its
AVX2 path applies); on the CPU `columns` is the column-buffer kernel it replaced
(EDVR_FAST_DCN_KERNEL=columns), kept as the baseline the issue measures against.
"""

from __future__ import annotations

import os

import pytest
import torch

from edvr_fast.ops import fallback, modulated_deform_conv2d

tv_ops = pytest.importorskip("torchvision.ops", reason="torchvision is the baseline (pip install .[test])")

# name: (N, C, H, W, offset groups)
GPU_SHAPES = {"L1 16x64x64x64": (16, 64, 64, 64, 8), "L2 16x64x32x32": (16, 64, 32, 32, 8),
              "infer 1x64x180x320": (1, 64, 180, 320, 8), "L1 64x64x64x64": (64, 64, 64, 64, 8)}
CPU_SHAPES = {"cpu 2x16x24x24": (2, 16, 24, 24, 8),  # small: the fallback runs here too
              "cpu 20x16x32x32 g2": (20, 16, 32, 32, 2),  # PCD L1 of the default run (batch 4 x 5 frames)
              "cpu 1x64x90x160": (1, 64, 90, 160, 8), "cpu 4x64x64x64": (4, 64, 64, 64, 8)}
CPU_IMPLS = ["ours", "columns", "torchvision", "conv2d", "fallback"]


class _Fallback(torch.autograd.Function):
    """The pure-PyTorch fallback as the op serves it when no compiled kernel is registered (forward and
    analytic backward), the CPU path of every release before the CPU kernel."""

    @staticmethod
    def forward(ctx, x, off, mask, w, b, G):
        ctx.save_for_backward(x, off, mask, w)
        ctx.G = G
        return fallback.forward(x, off, mask, w, b, (1, 1), (1, 1), (1, 1), 1, G)

    @staticmethod
    def backward(ctx, grad):
        x, off, mask, w = ctx.saved_tensors
        return fallback.backward(grad.contiguous(), x, off, mask, w, (1, 1), (1, 1), (1, 1), 1, ctx.G) + (None,)


def _inputs(shape, device, dtype, requires_grad):
    N, C, H, W, G = shape
    g = torch.Generator(device="cpu").manual_seed(0)

    def t(*s, scale=1.0):
        return (torch.randn(*s, generator=g) * scale).to(device=device, dtype=dtype).requires_grad_(requires_grad)

    x = t(N, C, H, W)
    off = t(N, 2 * G * 9, H, W, scale=2.0)
    mask = torch.rand(N, G * 9, H, W, generator=g).to(device=device, dtype=dtype).requires_grad_(requires_grad)
    w = t(C, C, 3, 3, scale=1 / 24)
    b = t(C)
    return x, off, mask, w, b


def _impls(x, off, mask, w, b, G):
    return {
        "ours": lambda: modulated_deform_conv2d(x, off, mask, w, b, 1, 1, 1, 1, G),
        "columns": lambda: modulated_deform_conv2d(x, off, mask, w, b, 1, 1, 1, 1, G),
        "nhwc": lambda: modulated_deform_conv2d(x, off, mask, w, b, 1, 1, 1, 1, G),
        "torchvision": lambda: tv_ops.deform_conv2d(x, off, w, b, 1, 1, 1, mask=mask),
        "conv2d": lambda: torch.nn.functional.conv2d(x, w, b, 1, 1),
        "fallback": lambda: _Fallback.apply(x, off, mask, w, b, G),
    }


def _case(measure, monkeypatch, shape_name, shape, device, mode, impl, precision, rounds):
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    backward = mode == "fwd+bwd"
    args = _inputs(shape, device, torch.float32 if impl == "torchvision" else dtype, backward)
    fn = _impls(*args, shape[4])[impl]
    autocast = precision == "bf16" and impl == "torchvision"  # torchvision has no bf16 kernel: autocast up-casts
    if impl in ("columns", "nhwc"):  # a kernel by name (EDVR_FAST_DCN_KERNEL); `ours` is the device's default
        monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", impl)

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            out = fn()
        if backward:
            out.backward(torch.ones_like(out))

    # Both sides in the same precision: strict fp32 (no TF32 in cuDNN or cuBLAS), TF32 on both, or bf16.
    if device == "cuda":
        # (assigned, not monkeypatched: pytest 9.2 delattrs these module properties on undo, an error;
        # test_dcn_cuda restores them)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == "tf32"
    inner = 20 if device == "cuda" else 1
    measure(step, group=f"dcn {mode} {precision} {shape_name}", impl=impl, device=device,
            inner=inner, rounds=rounds, shape=list(shape[:4]), offset_groups=shape[4], precision=precision)


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape_name", list(CPU_SHAPES))
def test_dcn_cpu(measure, monkeypatch, shape_name, mode, impl):
    if impl == "fallback" and shape_name != "cpu 2x16x24x24":
        pytest.skip("the fallback only at the small shape (seconds per call at the others)")
    # 11 rounds: the shared 2-core machines swing by 30% between calls; the median of 5 moved the ratios.
    _case(measure, monkeypatch, shape_name, CPU_SHAPES[shape_name], "cpu", mode, impl, "fp32", rounds=11)


# CUDA: ours = the column kernel (the CUDA default), nhwc = the opt-in NHWC CUDA kernel (EDVR_FAST_DCN_KERNEL=nhwc).
# EDVR_FAST_BENCH_CUDA_ROUNDS: rounds of 20 calls per case (benchmarks/device_check.sh cuts it to fit its slot).
CUDA_ROUNDS = int(os.environ.get("EDVR_FAST_BENCH_CUDA_ROUNDS", "10"))


@pytest.mark.parametrize("impl", ["ours", "nhwc", "torchvision", "conv2d"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape_name", list(GPU_SHAPES))
def test_dcn_cuda(measure, monkeypatch, cuda_only, shape_name, mode, precision, impl):
    if impl == "ours":
        monkeypatch.setenv("EDVR_FAST_DCN_KERNEL", "columns")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        _case(measure, monkeypatch, shape_name, GPU_SHAPES[shape_name], "cuda", mode, impl, precision,
              rounds=CUDA_ROUNDS)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
