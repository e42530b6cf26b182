"""Building blocks shared by the EDVR modules: residual block, pre-deblur pyramid, and the
alignment DCN that clamps its offsets and keeps device-side offset statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edvr_fast.ops import DCNPack, modulated_deform_conv2d

NEG_SLOPE = 0.1  # LeakyReLU slope used throughout EDVR


def lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, NEG_SLOPE)


def up2(x: Tensor) -> Tensor:
    """Bilinear x2 upsampling (align_corners=False), as every EDVR level transition."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1)


class ResBlock(nn.Module):
    """x + conv2(relu(conv1(x))): EDVR's residual block without batch norm."""

    def __init__(self, num_feat: int):
        super().__init__()
        self.conv1 = conv3(num_feat, num_feat)
        self.conv2 = conv3(num_feat, num_feat)
        # Scaled-down Kaiming init keeps a deep residual trunk stable at the start of training.
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class AlignDCN(DCNPack):
    """3x3 DCNv2 pack whose offsets come from a feature map; clamps them and tracks |offset| on device.

    Since the last `read_offset_stats`, `offset_abs_sum` adds each call's mean |offset|,
    `offset_abs_max` keeps the largest |offset| and `offset_calls` counts calls; all are buffers
    updated in place (no host sync), excluded from the state dict. Statistics are taken before the
    clamp, so they show what the offset branch asks for.
    """

    def __init__(self, num_feat: int, deformable_groups: int, max_offset: float | None = None):
        super().__init__(num_feat, num_feat, 3, padding=1, offset_groups=deformable_groups)
        self.max_offset = max_offset
        self.track_stats = True
        self.register_buffer("offset_abs_sum", torch.zeros(()), persistent=False)
        self.register_buffer("offset_abs_max", torch.zeros(()), persistent=False)
        self.register_buffer("offset_calls", torch.zeros(()), persistent=False)

    def forward(self, input: Tensor, feat: Tensor) -> Tensor:  # type: ignore[override]
        offset, mask = self.offset_mask(feat)
        if self.track_stats:
            a = offset.detach().abs().float()
            self.offset_abs_sum.add_(a.mean())
            self.offset_abs_max.copy_(torch.maximum(self.offset_abs_max, a.amax()))
            self.offset_calls.add_(1)
        if self.max_offset is not None:
            offset = offset.clamp(-self.max_offset, self.max_offset)
        return modulated_deform_conv2d(input, offset, mask, self.weight, self.bias, self.stride,
                                       self.padding, self.dilation, self.groups, self.offset_groups)

    def read_offset_stats(self) -> Tensor:
        """[sum of per-call mean |offset|, max |offset|, calls] since the last read; resets them."""
        out = torch.stack([self.offset_abs_sum, self.offset_abs_max, self.offset_calls])
        self.reset_offset_stats()
        return out

    def reset_offset_stats(self) -> None:
        self.offset_abs_sum.zero_()
        self.offset_abs_max.zero_()
        self.offset_calls.zero_()


class Predeblur(nn.Module):
    """Pre-deblur pyramid: 3 levels of residual blocks, coarse levels added back after upsampling.

    With hr_in, two stride-2 convs first bring full-resolution frames to 1/4 size.
    """

    def __init__(self, num_feat: int, hr_in: bool):
        super().__init__()
        self.hr_in = hr_in
        self.conv_first = conv3(3, num_feat)
        if hr_in:
            self.down_hr1 = conv3(num_feat, num_feat, 2)
            self.down_hr2 = conv3(num_feat, num_feat, 2)
        self.down_l2 = conv3(num_feat, num_feat, 2)
        self.down_l3 = conv3(num_feat, num_feat, 2)
        self.res_l3 = ResBlock(num_feat)
        self.res_l2_1 = ResBlock(num_feat)
        self.res_l2_2 = ResBlock(num_feat)
        self.res_l1 = nn.ModuleList(ResBlock(num_feat) for _ in range(5))

    def forward(self, x: Tensor) -> Tensor:
        l1 = lrelu(self.conv_first(x))
        if self.hr_in:
            l1 = lrelu(self.down_hr2(lrelu(self.down_hr1(l1))))
        l2 = lrelu(self.down_l2(l1))
        l3 = lrelu(self.down_l3(l2))
        l3 = up2(self.res_l3(l3))
        l2 = up2(self.res_l2_2(self.res_l2_1(l2) + l3))
        l1 = self.res_l1[1](self.res_l1[0](l1)) + l2
        for block in self.res_l1[2:]:
            l1 = block(l1)
        return l1
