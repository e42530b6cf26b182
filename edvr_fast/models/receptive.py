"""Receptive field of an EDVR architecture: how far (in input pixels) an output pixel can see.

A conservative bound for the inference tiler; DCN offsets are excluded unless max_offset bounds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edvr_fast.models.params import EDVRParams

# How the bound is computed. Positions are in input pixels; a feature pixel at a level of pixel size
# s (1 at input resolution, 4 at L1 with hr_in, x2 per pyramid level) sits at index * s. Walking the
# network, each op adds to the radius r (the farthest input pixel that can reach the output):
#   3x3 conv at size s: + s                  (1x1 conv: + 0)
#   stride-2 3x3 conv or 3x3/2 pool at s:   + s, then the size becomes 2s
#   bilinear x2 up from size S:             + 1.25 S (source index j/2 - 1/4 and its upper neighbour)
#   pixel shuffle x2 from size S:           + S / 2 (a fine pixel is off its coarse parent by < S/2)
#   DCN at size s: its input reaches + (1 + m + 1) s with m = max_offset (tap, offset, bilinear
#     neighbour) or + s without a clamp (offsets excluded), its offset/mask conv + s on the offset
#     features; the output takes the larger of the two.
#   concatenation, addition, attention products: the larger radius of the inputs.
# The global residual (bilinear upsampling of the centre frame) reaches 1.5 input pixels.
# Padding to a multiple of 4 or 16 only affects pixels the radius already covers at the borders.


@dataclass
class _Feat:
    r: float  # radius in input pixels
    s: float  # pixel size in input pixels

    def conv(self, n: int = 1) -> _Feat:
        return _Feat(self.r + n * self.s, self.s)

    def down(self) -> _Feat:
        return _Feat(self.r + self.s, 2 * self.s)

    def up(self) -> _Feat:
        return _Feat(self.r + 1.25 * self.s, self.s / 2)

    def shuffle(self) -> _Feat:
        return _Feat(self.r + 0.5 * self.s, self.s / 2)


def _join(*feats: _Feat) -> _Feat:
    return _Feat(max(f.r for f in feats), feats[0].s)


def _dcn(x: _Feat, offset_feat: _Feat, max_offset: float | None) -> _Feat:
    reach = 1 if max_offset is None else 2 + max_offset
    return _Feat(max(x.r + reach * x.s, offset_feat.r + x.s), x.s)


def _predeblur(f: _Feat, hr_in: bool) -> _Feat:
    f = f.conv()
    if hr_in:
        f = f.down().down()
    l2 = f.down()
    l3 = l2.down()
    l3 = l3.conv(2).up()
    l2 = _join(l2.conv(2), l3).conv(2).up()
    l1 = _join(f.conv(4), l2)
    return l1.conv(6)


def _pcd(l1: _Feat, l2: _Feat, l3: _Feat, m: float | None) -> _Feat:
    o3 = l3.conv(2)
    a3 = _dcn(l3, o3, m)
    o2 = _join(l2.conv(), o3.up()).conv(2)
    a2 = _join(_dcn(l2, o2, m), a3.up()).conv()
    o1 = _join(l1.conv(), o2.up()).conv(2)
    a1 = _join(_dcn(l1, o1, m), a2.up()).conv()
    oc = _join(a1, l1).conv(2)
    return _dcn(a1, oc, m)


def _tsa(f: _Feat) -> _Feat:
    weighted = f.conv()  # the 3x3 embeddings feed the per-pixel correlation
    attn = weighted.down()
    level = attn.down().conv(2).up()
    attn = _join(attn.conv(), level).up().conv()
    return _join(weighted, attn)


def receptive_radius(params: EDVRParams) -> int:
    """Input pixels on each side of an output pixel's position that can influence it (upper bound).

    A tiler that overlaps tiles by this many input pixels on every side gets the untiled result.
    """
    p = params
    f = _Feat(0.0, 1.0)
    if p.with_predeblur:
        f = _predeblur(f, p.hr_in)
    else:
        f = f.conv()
        if p.hr_in:
            f = f.down().down()
    l1 = f.conv(2 * p.num_extract_block)
    l2 = l1.down().conv()
    l3 = l2.down().conv()
    f = _pcd(l1, l2, l3, p.max_offset)
    if p.with_tsa:
        f = _tsa(f)
    f = f.conv(2 * p.num_reconstruct_block)
    for _ in range(p.num_upsample):
        f = f.conv().shuffle()
    f = f.conv(2)
    return math.ceil(max(f.r, 1.5))


def receptive_field(params: EDVRParams) -> int:
    """Side of the square input window an output pixel can see: 2 * receptive_radius + 1 pixels."""
    return 2 * receptive_radius(params) + 1
