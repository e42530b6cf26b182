"""TSA fusion: temporal attention against the reference frame, then a spatial attention pyramid.

Fuses aligned features [B, T, C, H, W] into [B, C, H, W]; H and W must be multiples of 4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edvr_fast.models.blocks import conv3, lrelu, up2


def _pool_pair(x: Tensor) -> Tensor:
    """Max and average 3x3/stride-2 pools side by side on the channel axis (halves H and W)."""
    return torch.cat([F.max_pool2d(x, 3, 2, 1), F.avg_pool2d(x, 3, 2, 1)], dim=1)


class TSAFusion(nn.Module):
    """Temporal-spatial attention fusion.

    Temporal: each frame's embedding (`nbr_embed`) is correlated per pixel with the reference
    frame's embedding (`ref_embed`); sigmoid(correlation) weights that frame's features.
    Spatial: a two-level max/avg-pool pyramid produces a multiplicative (sigmoid x 2) and an
    additive attention map for the fused features.
    """

    def __init__(self, num_feat: int, num_frame: int, center: int):
        super().__init__()
        self.center = center
        self.ref_embed = conv3(num_feat, num_feat)
        self.nbr_embed = conv3(num_feat, num_feat)
        self.feat_fusion = nn.Conv2d(num_frame * num_feat, num_feat, 1)
        self.spatial1 = nn.Conv2d(num_frame * num_feat, num_feat, 1)
        self.spatial2 = nn.Conv2d(2 * num_feat, num_feat, 1)
        self.spatial3 = conv3(num_feat, num_feat)
        self.spatial4 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial5 = conv3(num_feat, num_feat)
        self.spatial_l1 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_l2 = conv3(2 * num_feat, num_feat)
        self.spatial_l3 = conv3(num_feat, num_feat)
        self.spatial_add1 = nn.Conv2d(num_feat, num_feat, 1)
        self.spatial_add2 = nn.Conv2d(num_feat, num_feat, 1)

    def forward(self, aligned: Tensor) -> Tensor:
        b, t, c, h, w = aligned.shape
        emb_ref = self.ref_embed(aligned[:, self.center])
        emb = self.nbr_embed(aligned.reshape(b * t, c, h, w)).reshape(b, t, c, h, w)
        corr = torch.sigmoid((emb * emb_ref.unsqueeze(1)).sum(dim=2, keepdim=True))  # [b, t, 1, h, w]
        weighted = (aligned * corr).reshape(b, t * c, h, w)

        feat = lrelu(self.feat_fusion(weighted))

        attn = lrelu(self.spatial1(weighted))
        attn = lrelu(self.spatial2(_pool_pair(attn)))
        level = lrelu(self.spatial_l1(attn))
        level = lrelu(self.spatial_l2(_pool_pair(level)))
        level = up2(lrelu(self.spatial_l3(level)))
        attn = lrelu(self.spatial3(attn)) + level
        attn = self.spatial5(up2(lrelu(self.spatial4(attn))))
        attn_add = self.spatial_add2(lrelu(self.spatial_add1(attn)))
        # sigmoid(.) * 2 is close to 1 at initialisation, so the attention starts as an identity.
        return feat * torch.sigmoid(attn) * 2 + attn_add
