"""Registration of `torch.ops.edvr_fast.modulated_deform_conv2d`: schema, kernels, fake and autograd.

The compiled extension (`edvr_fast._C`) owns the schema and the CPU kernels (and, when built with CUDA,
the CUDA kernels); this module fills every dispatch key the extension left empty with the pure-PyTorch
fallback: all of them in a source checkout without a build, or under EDVR_FAST_FORCE_FALLBACK=1.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from edvr_fast.ops import fallback

NAMESPACE = "edvr_fast"
FWD = "modulated_deform_conv2d"
BWD = "modulated_deform_conv2d_backward"
# Kept identical to csrc/ops/modulated_deform_conv.cpp (tests compare them when _C is loaded).
FWD_SCHEMA = (
    "modulated_deform_conv2d(Tensor input, Tensor offset, Tensor mask, Tensor weight, Tensor? bias, "
    "int[2] stride, int[2] padding, int[2] dilation, int groups, int offset_groups) -> Tensor"
)
BWD_SCHEMA = (
    "modulated_deform_conv2d_backward(Tensor grad_output, Tensor input, Tensor offset, Tensor mask, "
    "Tensor weight, int[2] stride, int[2] padding, int[2] dilation, int groups, int offset_groups) "
    "-> (Tensor, Tensor, Tensor, Tensor, Tensor)"
)
FORCE_FALLBACK_ENV = "EDVR_FAST_FORCE_FALLBACK"

_state: dict[str, object] = {"extension": None, "extension_error": None, "python_kernels": set()}


def force_fallback() -> bool:
    return os.environ.get(FORCE_FALLBACK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _load_extension() -> None:
    from edvr_fast._extension import load_extension

    _C, why = load_extension()  # importing _C registers the schema and compiled kernels
    if _C is not None:
        _state["extension"] = _C
    else:  # source checkout without a build, or a build for another torch (said once, as a warning)
        _state["extension_error"] = why
        lib = torch.library.Library(NAMESPACE, "DEF")  # noqa: TOR901 (kept alive in _state)
        lib.define(FWD_SCHEMA)
        lib.define(BWD_SCHEMA)
        _state["lib"] = lib


def _has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{op}", key)


def layout_of(t: Tensor) -> torch.memory_format:
    """The memory format of a result that follows t's, as conv2d does: channels_last only when t is
    channels_last and not also plain contiguous (csrc's layout_of says the same)."""
    if not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _fwd_kernel(input, offset, mask, weight, bias, stride, padding, dilation, groups, offset_groups):
    # The fallback works on contiguous tensors; its result takes the input's layout.
    input, offset, mask = input.contiguous(), offset.contiguous(), mask.contiguous()
    out = fallback.forward(input, offset, mask, weight, bias, tuple(stride), tuple(padding),
                           tuple(dilation), groups, offset_groups)
    return out.contiguous(memory_format=layout_of(input))


def _bwd_kernel(grad_output, input, offset, mask, weight, stride, padding, dilation, groups, offset_groups):
    layouts = layout_of(input), layout_of(offset), layout_of(mask)
    grad_output, input, offset, mask = (t.contiguous() for t in (grad_output, input, offset, mask))
    gi, go, gm, gw, gb = fallback.backward(grad_output, input, offset, mask, weight, tuple(stride),
                                           tuple(padding), tuple(dilation), groups, offset_groups)
    return (gi.contiguous(memory_format=layouts[0]), go.contiguous(memory_format=layouts[1]),
            gm.contiguous(memory_format=layouts[2]), gw.contiguous(), gb.contiguous())


def _register_python_kernels() -> None:
    for key, device in (("CPU", "cpu"), ("CUDA", "cuda")):
        if not _has_kernel(FWD, key):
            torch.library.register_kernel(f"{NAMESPACE}::{FWD}", device, _fwd_kernel)
            torch.library.register_kernel(f"{NAMESPACE}::{BWD}", device, _bwd_kernel)
            _state["python_kernels"].add(device)


def _autocast_kernel(device_type: str, key: str):
    excluded = torch._C.DispatchKeySet(getattr(torch._C.DispatchKey, key))

    def kernel(input, offset, mask, weight, bias, stride, padding, dilation, groups, offset_groups):
        # Like conv2d: every floating input is cast to the autocast dtype (bf16/fp16), computed natively.
        dt = torch.get_autocast_dtype(device_type)

        def cast(t):
            return t.to(dt) if t is not None and t.is_floating_point() and t.dtype != torch.float64 else t

        with torch._C._ExcludeDispatchKeyGuard(excluded):
            return torch.ops.edvr_fast.modulated_deform_conv2d(
                cast(input), cast(offset), cast(mask), cast(weight), cast(bias), stride, padding,
                dilation, groups, offset_groups)

    return kernel


def _register_autocast() -> None:
    for key, device in (("AutocastCUDA", "cuda"), ("AutocastCPU", "cpu")):
        if not _has_kernel(FWD, key):
            lib = torch.library.Library(NAMESPACE, "IMPL")  # noqa: TOR901 (kept alive in _state)
            lib.impl(FWD, _autocast_kernel(device, key), key)
            _state.setdefault("autocast_libs", []).append(lib)


def _register_fake() -> None:
    @torch.library.register_fake(f"{NAMESPACE}::{FWD}")
    def _(input, offset, mask, weight, bias, stride, padding, dilation, groups, offset_groups):
        torch._check(input.dim() == 4, lambda: f"input must be 4-D, got {input.dim()}-D")
        torch._check(weight.dim() == 4, lambda: f"weight must be 4-D, got {weight.dim()}-D")
        Ho, Wo = fallback.output_size(input.shape, weight.shape, stride, padding, dilation)
        torch._check(offset.shape[2] == Ho and offset.shape[3] == Wo,
                     lambda: f"offset spatial size must be {(Ho, Wo)}")
        # The output has the input's layout (channels_last in, channels_last out), as conv2d's.
        out = input.new_empty((input.shape[0], weight.shape[0], Ho, Wo))
        return out.contiguous(memory_format=layout_of(input))

    @torch.library.register_fake(f"{NAMESPACE}::{BWD}")
    def _(grad_output, input, offset, mask, weight, stride, padding, dilation, groups, offset_groups):
        # Each gradient has the layout of the tensor it belongs to; weight and bias are contiguous.
        return (torch.empty_like(input, memory_format=layout_of(input)),
                torch.empty_like(offset, memory_format=layout_of(offset)),
                torch.empty_like(mask, memory_format=layout_of(mask)),
                weight.new_empty(weight.shape), weight.new_empty((weight.shape[0],)))


def _setup_context(ctx, inputs, output) -> None:
    input, offset, mask, weight, bias, stride, padding, dilation, groups, offset_groups = inputs
    ctx.save_for_backward(input, offset, mask, weight)
    ctx.has_bias = bias is not None
    ctx.conf = (stride, padding, dilation, groups, offset_groups)


def _backward(ctx, grad_output: Tensor):
    input, offset, mask, weight = ctx.saved_tensors
    stride, padding, dilation, groups, offset_groups = ctx.conf
    gi, go, gm, gw, gb = torch.ops.edvr_fast.modulated_deform_conv2d_backward(
        grad_output, input, offset, mask, weight, stride, padding, dilation, groups,
        offset_groups,
    )
    return gi, go, gm, gw, (gb if ctx.has_bias else None), None, None, None, None, None


def register() -> None:
    if _state.get("registered"):
        return
    _load_extension()
    _register_python_kernels()
    _register_autocast()
    _register_fake()
    torch.library.register_autograd(f"{NAMESPACE}::{FWD}", _backward, setup_context=_setup_context)
    _state["registered"] = True


def backend() -> dict[str, str]:
    """Which kernel serves each device: 'cpu-kernel' / 'cuda-kernel' (compiled), 'fallback' (pure
    PyTorch) or 'unavailable'."""
    info = {}
    for key, device in (("CPU", "cpu"), ("CUDA", "cuda")):
        if device in _state["python_kernels"]:
            name = "fallback"
        elif _has_kernel(FWD, key):
            name = f"{device}-kernel"
        else:
            name = "unavailable"
        if device == "cuda" and not torch.cuda.is_available():
            name += " (no CUDA device)"
        info[device] = name
    ext = _state["extension"]
    info["extension"] = "loaded" if ext is not None else f"missing: {_state['extension_error']}"
    info["forced_fallback"] = str(force_fallback())
    return info
