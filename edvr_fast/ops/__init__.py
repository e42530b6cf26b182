"""Python face of the modulated deformable convolution (DCNv2) operator and its modules.

`modulated_deform_conv2d` checks its arguments and calls `torch.ops.edvr_fast.modulated_deform_conv2d`;
`backend()` says which kernel serves CPU and CUDA.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from edvr_fast.errors import InputError
from edvr_fast.ops import _registry

_registry.register()

backend = _registry.backend
FORCE_FALLBACK_ENV = _registry.FORCE_FALLBACK_ENV

__all__ = ["modulated_deform_conv2d", "ModulatedDeformConv2d", "DCNPack", "backend", "FORCE_FALLBACK_ENV"]

_FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        out = (v, v)
    else:
        out = tuple(int(x) for x in v)
        if len(out) != 2:
            raise InputError(f"{name} must be an int or a pair of ints, got {v!r}")
    return out  # type: ignore[return-value]


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # devices without autocast (meta, for shape-only runs) have none enabled
        return False


def _check(input: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None,
           stride, padding, dilation, groups: int, offset_groups: int) -> None:
    """Shape/dtype/device checks that name the argument and say expected vs got (host-side only)."""
    for name, t in (("input", input), ("offset", offset), ("mask", mask), ("weight", weight)):
        if t.dim() != 4:
            raise InputError(f"{name} must be a 4-D tensor, got shape {tuple(t.shape)}")
        if t.dtype not in _FLOAT_TYPES:
            raise InputError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
        if t.device != input.device:
            raise InputError(f"{name} is on {t.device} but input is on {input.device}; move them together")
    autocast = _autocast_enabled(input.device.type)
    if not autocast and (offset.dtype != input.dtype or mask.dtype != input.dtype):
        raise InputError(
            f"input, offset and mask must share a dtype, got {input.dtype}, {offset.dtype}, {mask.dtype}"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise InputError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    if bias is not None and bias.device != input.device:
        raise InputError(f"bias is on {bias.device} but input is on {input.device}")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise InputError(f"stride and dilation must be >= 1 and padding >= 0, got stride={stride}, "
                         f"dilation={dilation}, padding={padding}")
    N, C, H, W = input.shape
    Co, Cig, kh, kw = weight.shape
    if groups < 1 or C % groups or Co % groups:
        raise InputError(f"groups={groups} must divide input channels ({C}) and output channels ({Co})")
    if Cig * groups != C:
        raise InputError(f"weight expects {Cig * groups} input channels (weight.shape[1]={Cig} x groups="
                         f"{groups}), got input with {C}")
    if offset_groups < 1 or C % offset_groups:
        raise InputError(f"offset_groups={offset_groups} must divide input channels ({C})")
    Ho = (H + 2 * padding[0] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
    Wo = (W + 2 * padding[1] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
    if Ho < 1 or Wo < 1:
        raise InputError(f"input of size {H}x{W} is too small for a {kh}x{kw} kernel with padding {padding} "
                         f"and dilation {dilation}")
    K = kh * kw
    want_off = (N, 2 * offset_groups * K, Ho, Wo)
    if tuple(offset.shape) != want_off:
        raise InputError(f"offset must have shape {want_off} (N, 2*offset_groups*kh*kw, Ho, Wo), "
                         f"got {tuple(offset.shape)}")
    want_mask = (N, offset_groups * K, Ho, Wo)
    if tuple(mask.shape) != want_mask:
        raise InputError(f"mask must have shape {want_mask} (N, offset_groups*kh*kw, Ho, Wo), "
                         f"got {tuple(mask.shape)}")


def modulated_deform_conv2d(
    input: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    offset_groups: int = 1,
) -> Tensor:
    """Modulated deformable convolution (DCNv2).

    Shapes: input [N, C, H, W]; weight [Co, C/groups, kh, kw]; offset [N, 2*G*kh*kw, Ho, Wo];
    mask [N, G*kh*kw, Ho, Wo] with G = offset_groups; returns [N, Co, Ho, Wo].

    Offset layout (DCNv2, torchvision and every published EDVR weight file; checkpoints depend on it):
    for offset group g and kernel tap k = i*kw + j (row-major over kh, kw), channel 2*(g*kh*kw + k)
    holds dy and channel 2*(g*kh*kw + k) + 1 holds dx (interleaved pairs, not a dy half and a dx half).
    The mask for that group and tap is channel g*kh*kw + k. Input channels c belong to offset group
    c // (C / G). A tap samples input pixel (ho*sh - ph + i*dh + dy, wo*sw - pw + j*dw + dx) bilinearly,
    with zeros outside the image, and is multiplied by its mask value.
    """
    stride_, padding_ = _pair(stride, "stride"), _pair(padding, "padding")
    dilation_ = _pair(dilation, "dilation")
    if not torch.compiler.is_compiling():
        _check(input, offset, mask, weight, bias, stride_, padding_, dilation_, groups, offset_groups)
    return torch.ops.edvr_fast.modulated_deform_conv2d(
        input, offset, mask, weight, bias, list(stride_), list(padding_), list(dilation_), groups,
        offset_groups,
    )


class ModulatedDeformConv2d(nn.Module):
    """A DCNv2 layer that owns weight and bias; the caller passes offset and mask to `forward`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int], stride=1,
                 padding=0, dilation=1, groups: int = 1, offset_groups: int = 1, bias: bool = True):
        super().__init__()
        kh, kw = _pair(kernel_size, "kernel_size")
        if in_channels % groups or out_channels % groups:
            raise InputError(f"groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        if in_channels % offset_groups:
            raise InputError(f"offset_groups={offset_groups} must divide in_channels={in_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.groups, self.offset_groups = groups, offset_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor) -> Tensor:
        return modulated_deform_conv2d(input, offset, mask, self.weight, self.bias, self.stride,
                                       self.padding, self.dilation, self.groups, self.offset_groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, offset_groups={self.offset_groups}, bias={self.bias is not None}")


class DCNPack(ModulatedDeformConv2d):
    """EDVR's deformable pack: offset and mask come from a conv over a second feature map.

    `conv_offset` produces 3*offset_groups*kh*kw channels, chunked into three equal parts o1, o2, m;
    the offset is cat(o1, o2) (the layout documented in `modulated_deform_conv2d`) and the mask
    sigmoid(m). `conv_offset` starts at zero, so a fresh pack samples the regular grid with mask 0.5.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
                 stride=1, padding=1, dilation=1, groups: int = 1, offset_groups: int = 8,
                 bias: bool = True, offset_in_channels: int | None = None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         offset_groups, bias)
        kh, kw = self.kernel_size
        self.conv_offset = nn.Conv2d(offset_in_channels or in_channels, 3 * offset_groups * kh * kw,
                                     (kh, kw), self.stride, self.padding, self.dilation, bias=True)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def offset_mask(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        o1, o2, m = torch.chunk(self.conv_offset(feat), 3, dim=1)
        return torch.cat((o1, o2), dim=1), torch.sigmoid(m)

    def forward(self, input: Tensor, feat: Tensor) -> Tensor:  # type: ignore[override]
        offset, mask = self.offset_mask(feat)
        return modulated_deform_conv2d(input, offset, mask, self.weight, self.bias, self.stride,
                                       self.padding, self.dilation, self.groups, self.offset_groups)
