"""DCN operator: ours vs torchvision.ops.deform_conv2d vs cuDNN/oneDNN conv2d of the same shape.

GPU shapes are those of ../shared/TARGETS.md (3x3, 64->64, offset groups 8); CPU shapes are small so
that `pytest benchmarks/` stays short on a 2-core machine.
"""

from __future__ import annotations

import pytest
import torch

from edvr_fast.ops import fallback, modulated_deform_conv2d

tv_ops = pytest.importorskip("torchvision.ops", reason="torchvision is the baseline (pip install .[test])")

GPU_SHAPES = {"L1 16x64x64x64": (16, 64, 64, 64), "L2 16x64x32x32": (16, 64, 32, 32),
              "infer 1x64x180x320": (1, 64, 180, 320)}
# The second CPU shape is PCD level 1 of the default training run (batch 4 x 5 frames, 16 features).
CPU_SHAPES = {"cpu 2x16x24x24": (2, 16, 24, 24), "cpu 20x16x32x32": (20, 16, 32, 32)}
G = 8


class _Fallback(torch.autograd.Function):
    """The pure-PyTorch fallback as the op serves it when no compiled kernel is registered (forward and
    analytic backward), the CPU path of every release before the CPU kernel."""

    @staticmethod
    def forward(ctx, x, off, mask, w, b):
        ctx.save_for_backward(x, off, mask, w)
        return fallback.forward(x, off, mask, w, b, (1, 1), (1, 1), (1, 1), 1, G)

    @staticmethod
    def backward(ctx, grad):
        x, off, mask, w = ctx.saved_tensors
        return fallback.backward(grad.contiguous(), x, off, mask, w, (1, 1), (1, 1), (1, 1), 1, G)


def _inputs(shape, device, dtype, requires_grad):
    N, C, H, W = shape
    g = torch.Generator(device="cpu").manual_seed(0)

    def t(*s, scale=1.0):
        return (torch.randn(*s, generator=g) * scale).to(device=device, dtype=dtype).requires_grad_(requires_grad)

    x = t(N, C, H, W)
    off = t(N, 2 * G * 9, H, W, scale=2.0)
    mask = torch.rand(N, G * 9, H, W, generator=g).to(device=device, dtype=dtype).requires_grad_(requires_grad)
    w = t(C, C, 3, 3, scale=1 / 24)
    b = t(C)
    return x, off, mask, w, b


def _impls(x, off, mask, w, b):
    return {
        "ours": lambda: modulated_deform_conv2d(x, off, mask, w, b, 1, 1, 1, 1, G),
        "torchvision": lambda: tv_ops.deform_conv2d(x, off, w, b, 1, 1, 1, mask=mask),
        "conv2d": lambda: torch.nn.functional.conv2d(x, w, b, 1, 1),
        "fallback": lambda: _Fallback.apply(x, off, mask, w, b),
    }


def _case(measure, shape_name, shape, device, mode, impl, precision):
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    backward = mode == "fwd+bwd"
    args = _inputs(shape, device, torch.float32 if impl == "torchvision" else dtype, backward)
    fn = _impls(*args)[impl]
    autocast = precision == "bf16" and impl == "torchvision"  # torchvision has no bf16 kernel: autocast up-casts

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            out = fn()
        if backward:
            out.backward(torch.ones_like(out))

    tf32 = precision == "tf32"
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32 or old if device == "cuda" else old
    try:
        inner = 20 if device == "cuda" else 1
        measure(step, group=f"dcn {mode} {precision} {shape_name}", impl=impl, device=device,
                inner=inner, rounds=10 if device == "cuda" else 3, shape=list(shape), precision=precision)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("impl", ["ours", "fallback", "torchvision", "conv2d"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape_name", list(CPU_SHAPES))
def test_dcn_cpu(measure, shape_name, mode, impl):
    _case(measure, shape_name, CPU_SHAPES[shape_name], "cpu", mode, impl, "fp32")


@pytest.mark.parametrize("impl", ["ours", "torchvision", "conv2d"])
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape_name", list(GPU_SHAPES))
def test_dcn_cuda(measure, cuda_only, shape_name, mode, precision, impl):
    _case(measure, shape_name, GPU_SHAPES[shape_name], "cuda", mode, impl, precision)
