"""PCD alignment: pyramid, cascading and deformable alignment of neighbour features to the reference.

All neighbour frames go through each level in one batched call ([B*T, C, h, w]); no loop over frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edvr_fast.models.blocks import AlignDCN, conv3, lrelu, up2


class PCDLevel(nn.Module):
    """One pyramid level: offset features from (neighbour, reference) and the coarser level, then a DCN.

    The coarsest level (`coarsest=True`) has no coarser offsets/features to merge, so no offset_conv3
    and no feat_conv.
    """

    def __init__(self, num_feat: int, deformable_groups: int, coarsest: bool, max_offset: float | None):
        super().__init__()
        self.coarsest = coarsest
        self.offset_conv1 = conv3(2 * num_feat, num_feat)
        self.offset_conv2 = conv3(num_feat if coarsest else 2 * num_feat, num_feat)
        if not coarsest:
            self.offset_conv3 = conv3(num_feat, num_feat)
        self.dcn = AlignDCN(num_feat, deformable_groups, max_offset)
        if not coarsest:
            self.feat_conv = conv3(2 * num_feat, num_feat)

    def forward(self, nbr: Tensor, ref: Tensor, up_offset: Tensor | None = None,
                up_feat: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Returns (offset features, aligned features) at this level."""
        offset = lrelu(self.offset_conv1(torch.cat([nbr, ref], dim=1)))
        if self.coarsest:
            offset = lrelu(self.offset_conv2(offset))
            feat = lrelu(self.dcn(nbr, offset))
            return offset, feat
        assert up_offset is not None and up_feat is not None
        offset = lrelu(self.offset_conv2(torch.cat([offset, up_offset], dim=1)))
        offset = lrelu(self.offset_conv3(offset))
        feat = self.feat_conv(torch.cat([self.dcn(nbr, offset), up_feat], dim=1))
        return offset, feat


class Cascade(nn.Module):
    """The cascading DCN that refines the L1-aligned features against the reference once more."""

    def __init__(self, num_feat: int, deformable_groups: int, max_offset: float | None):
        super().__init__()
        self.offset_conv1 = conv3(2 * num_feat, num_feat)
        self.offset_conv2 = conv3(num_feat, num_feat)
        self.dcn = AlignDCN(num_feat, deformable_groups, max_offset)

    def forward(self, feat: Tensor, ref: Tensor) -> Tensor:
        offset = lrelu(self.offset_conv2(lrelu(self.offset_conv1(torch.cat([feat, ref], dim=1)))))
        return lrelu(self.dcn(feat, offset))


class PCDAlignment(nn.Module):
    """Aligns every frame's 3-level feature pyramid to the reference frame's pyramid.

    Offset features are upsampled x2 between levels and doubled in magnitude (a displacement of one
    coarse pixel is two fine pixels).
    """

    def __init__(self, num_feat: int, deformable_groups: int, max_offset: float | None = None):
        super().__init__()
        self.l3 = PCDLevel(num_feat, deformable_groups, True, max_offset)
        self.l2 = PCDLevel(num_feat, deformable_groups, False, max_offset)
        self.l1 = PCDLevel(num_feat, deformable_groups, False, max_offset)
        self.cascade = Cascade(num_feat, deformable_groups, max_offset)

    def forward(self, nbr: list[Tensor], ref: list[Tensor]) -> Tensor:
        """nbr, ref: [L1, L2, L3] features, each [N, C, h, w] with ref already matched to nbr's N.

        Returns the aligned L1 features [N, C, h1, w1].
        """
        offset, feat = self.l3(nbr[2], ref[2])
        offset, feat = self.l2(nbr[1], ref[1], up2(offset) * 2, up2(feat))
        feat = lrelu(feat)
        offset, feat = self.l1(nbr[0], ref[0], up2(offset) * 2, up2(feat))
        return self.cascade(feat, ref[0])
