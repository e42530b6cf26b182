"""A float64 DCNv2 written with plain loops, straight from the paper's definition (test reference only)."""

from __future__ import annotations

import math

import torch


def bilinear(plane: torch.Tensor, y: float, x: float) -> float:
    """DCNv2's rule: zero when the point is one pixel or more outside; corners outside count as zero."""
    H, W = plane.shape
    if y <= -1 or y >= H or x <= -1 or x >= W:
        return 0.0
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    total = 0.0
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            if 0 <= yy < H and 0 <= xx < W:
                total += wy * wx * float(plane[yy, xx])
    return total


def naive_mdcn(inp, offset, mask, weight, bias, stride, padding, dilation, groups, offset_groups):
    inp, offset, mask, weight = (t.double() for t in (inp, offset, mask, weight))
    N, C, H, W = inp.shape
    Co, Cig, kh, kw = weight.shape
    Ho, Wo = offset.shape[2], offset.shape[3]
    K = kh * kw
    Cg = C // offset_groups
    cols = torch.zeros(N, C, K, Ho, Wo, dtype=torch.float64)
    for n in range(N):
        for c in range(C):
            g = c // Cg
            for i in range(kh):
                for j in range(kw):
                    k = i * kw + j
                    for ho in range(Ho):
                        for wo in range(Wo):
                            dy = float(offset[n, 2 * (g * K + k), ho, wo])
                            dx = float(offset[n, 2 * (g * K + k) + 1, ho, wo])
                            y = ho * stride[0] - padding[0] + i * dilation[0] + dy
                            x = wo * stride[1] - padding[1] + j * dilation[1] + dx
                            m = float(mask[n, g * K + k, ho, wo])
                            cols[n, c, k, ho, wo] = m * bilinear(inp[n, c], y, x)
    out = torch.zeros(N, Co, Ho, Wo, dtype=torch.float64)
    Cog = Co // groups
    for gi in range(groups):
        w = weight[gi * Cog:(gi + 1) * Cog].reshape(Cog, Cig * K)
        c = cols[:, gi * Cig:(gi + 1) * Cig].reshape(N, Cig * K, Ho * Wo)
        out[:, gi * Cog:(gi + 1) * Cog] = torch.einsum("ok,nkl->nol", w, c).view(N, Cog, Ho, Wo)
    if bias is not None:
        out += bias.double().view(1, Co, 1, 1)
    return out


def out_size(size, k, s, p, d):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def make_case(N, C, Co, H, W, kh, kw, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1,
              offset_groups=1, offset_scale=2.0, dtype=torch.float64, device="cpu", bias=True, seed=0,
              mask_mode="random", integer_offsets=False):
    g = torch.Generator().manual_seed(seed)
    Ho = out_size(H, kh, stride[0], padding[0], dilation[0])
    Wo = out_size(W, kw, stride[1], padding[1], dilation[1])
    K = kh * kw
    x = torch.randn(N, C, H, W, generator=g, dtype=torch.float64)
    w = torch.randn(Co, C // groups, kh, kw, generator=g, dtype=torch.float64) / math.sqrt(C * K / groups)
    off = torch.randn(N, 2 * offset_groups * K, Ho, Wo, generator=g, dtype=torch.float64) * offset_scale
    if integer_offsets:  # samples on whole pixels, many exactly on the border rows/columns (-1, H-1, H)
        off = off.round()
    if mask_mode == "random":
        m = torch.rand(N, offset_groups * K, Ho, Wo, generator=g, dtype=torch.float64)
    elif mask_mode == "zeros":
        m = torch.zeros(N, offset_groups * K, Ho, Wo, dtype=torch.float64)
    else:
        m = torch.ones(N, offset_groups * K, Ho, Wo, dtype=torch.float64)
    b = torch.randn(Co, generator=g, dtype=torch.float64) if bias else None
    conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, offset_groups=offset_groups)

    def cast(t):
        return t.to(dtype=dtype, device=device)

    return (cast(x), cast(off), cast(m), cast(w), cast(b) if b is not None else None), conv
