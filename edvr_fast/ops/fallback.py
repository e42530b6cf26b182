"""Pure-PyTorch modulated deformable convolution (DCNv2): forward and analytic backward.

The reference for every compiled kernel and the kernel that runs wherever the extension or CUDA is missing.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Layout (DCNv2, torchvision and every published EDVR weight file): for offset group g and kernel tap
# k = i * kw + j, offset channel 2 * (g * kh * kw + k) is dy, the next one dx; mask channel g * kh * kw + k.


def _out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - (dil * (k - 1) + 1)) // stride + 1


def _sampling_plan(
    offset: Tensor,
    H: int,
    W: int,
    kh: int,
    kw: int,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    offset_groups: int,
    compute_dtype: torch.dtype,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Where each (image, group, tap, output pixel) samples from.

    Returns (idx [N,G,4,K*L] long, wts [N,G,4,K*L], ly, lx, valid [N,G,4,K*L]) with the four bilinear
    corners ordered (low,low), (low,high), (high,low), (high,high). A corner outside the image gets
    weight 0 and a clamped index: that is the DCNv2 rule (zero outside the image, partial corners at
    the border).
    """
    N = offset.shape[0]
    Ho, Wo = offset.shape[2], offset.shape[3]
    K = kh * kw
    dev = offset.device
    off = offset.to(compute_dtype).view(N, offset_groups, K, 2, Ho, Wo)
    ki = torch.arange(kh, device=dev, dtype=compute_dtype).repeat_interleave(kw)  # [K]
    kj = torch.arange(kw, device=dev, dtype=compute_dtype).repeat(kh)
    hs = torch.arange(Ho, device=dev, dtype=compute_dtype) * stride[0] - padding[0]
    ws = torch.arange(Wo, device=dev, dtype=compute_dtype) * stride[1] - padding[1]
    base_y = hs.view(1, Ho, 1) + (ki * dilation[0]).view(K, 1, 1)  # [K,Ho,1]
    base_x = ws.view(1, 1, Wo) + (kj * dilation[1]).view(K, 1, 1)  # [K,1,Wo]
    # Integer and fractional parts come from the offset alone (exact), as in the CUDA kernels; adding the
    # whole-pixel base first would round large coordinates and could flip floor() near a whole pixel.
    dy, dx = off[:, :, :, 0], off[:, :, :, 1]  # [N,G,K,Ho,Wo]
    fy, fx = torch.floor(dy), torch.floor(dx)
    ly, lx = dy - fy, dx - fx
    y0f = base_y.unsqueeze(0).unsqueeze(0) + fy
    x0f = base_x.unsqueeze(0).unsqueeze(0) + fx
    # The DCNv2 rule: a point with y <= -1, y >= H, x <= -1 or x >= W samples zero and has no gradient.
    inside = (((y0f > -1) | ((y0f == -1) & (ly > 0))) & (y0f < H)
              & ((x0f > -1) | ((x0f == -1) & (lx > 0))) & (x0f < W))
    zero = torch.zeros((), dtype=compute_dtype, device=dev)
    y0 = torch.where(inside, y0f, zero).long()  # NaN or huge offsets never reach an index
    x0 = torch.where(inside, x0f, zero).long()
    ly, lx = torch.where(inside, ly, zero), torch.where(inside, lx, zero)
    y1 = y0 + 1
    x1 = x0 + 1
    vy0 = (y0 >= 0) & (y0 < H) & inside
    vy1 = (y1 >= 0) & (y1 < H) & inside
    vx0 = (x0 >= 0) & (x0 < W)
    vx1 = (x1 >= 0) & (x1 < W)
    hy, hx = 1 - ly, 1 - lx
    corners = ((y0, x0, vy0 & vx0, hy * hx), (y0, x1, vy0 & vx1, hy * lx),
               (y1, x0, vy1 & vx0, ly * hx), (y1, x1, vy1 & vx1, ly * lx))
    idx = torch.stack([yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1) for yy, xx, _, _ in corners], dim=2)
    valid = torch.stack([v for _, _, v, _ in corners], dim=2)
    wts = torch.stack([w for _, _, _, w in corners], dim=2) * valid
    shp = (N, offset_groups, 4, K * Ho * Wo)
    return idx.reshape(shp), wts.reshape(shp), ly, lx, valid.reshape(shp)


def _gather(inp: Tensor, idx: Tensor, offset_groups: int) -> Tensor:
    """inp [N,C,H,W], idx [N,G,4,P] -> corner values [N,G,Cg,4,P]."""
    N, C, H, W = inp.shape
    Cg = C // offset_groups
    src = inp.reshape(N, offset_groups, Cg, 1, H * W).expand(N, offset_groups, Cg, 4, H * W)
    index = idx.unsqueeze(2).expand(N, offset_groups, Cg, 4, idx.shape[-1])
    return torch.gather(src, 4, index)


def _columns(inp, offset, mask, kh, kw, stride, padding, dilation, offset_groups, compute_dtype):
    N, C, H, W = inp.shape
    Ho, Wo = offset.shape[2], offset.shape[3]
    K = kh * kw
    idx, wts, ly, lx, valid = _sampling_plan(
        offset, H, W, kh, kw, stride, padding, dilation, offset_groups, compute_dtype
    )
    corners = _gather(inp.to(compute_dtype), idx, offset_groups)  # [N,G,Cg,4,P]
    val = (corners * wts.unsqueeze(2)).sum(3)  # [N,G,Cg,P]
    m = mask.to(compute_dtype).reshape(N, offset_groups, 1, K * Ho * Wo)
    cols = (val * m).reshape(N, C * K, Ho * Wo)  # channel-major (c, k) rows, as weight.view(Co, -1)
    return cols, (idx, wts, ly, lx, valid, corners, val, m)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # fp16/bf16 are computed in fp32 (accumulation precision of the compiled kernels); fp32/fp64 as is.
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def forward(
    inp: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    offset_groups: int,
) -> Tensor:
    """out[n,o] = bias[o] + sum_{c,k} weight[o,c,k] * mask[n,g,k] * bilinear(inp[n,c], p + p_k + offset)."""
    N, C, H, W = inp.shape
    Co, Cig, kh, kw = weight.shape
    Ho, Wo = offset.shape[2], offset.shape[3]
    cd = _compute_dtype(inp.dtype)
    cols, _ = _columns(inp, offset, mask, kh, kw, stride, padding, dilation, offset_groups, cd)
    Kg = Cig * kh * kw
    w = weight.to(cd).reshape(groups, Co // groups, Kg)
    cols = cols.view(N, groups, Kg, Ho * Wo)
    out = torch.einsum("gok,ngkl->ngol", w, cols).reshape(N, Co, Ho, Wo)
    if bias is not None:
        out = out + bias.to(cd).view(1, Co, 1, 1)
    return out.to(inp.dtype).contiguous()


def backward(
    grad_out: Tensor,
    inp: Tensor,
    offset: Tensor,
    mask: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    offset_groups: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Analytic gradients (input, offset, mask, weight, bias) of `forward`; bias grad is always returned."""
    N, C, H, W = inp.shape
    Co, Cig, kh, kw = weight.shape
    Ho, Wo = offset.shape[2], offset.shape[3]
    K, L, G = kh * kw, Ho * Wo, offset_groups
    Cg = C // G
    cd = _compute_dtype(inp.dtype)
    cols, (idx, wts, ly, lx, valid, corners, val, m) = _columns(
        inp, offset, mask, kh, kw, stride, padding, dilation, offset_groups, cd
    )
    Kg = Cig * K
    go = grad_out.to(cd).reshape(N, groups, Co // groups, L)
    w = weight.to(cd).reshape(groups, Co // groups, Kg)
    grad_w = torch.einsum("ngol,ngkl->gok", go, cols.view(N, groups, Kg, L)).reshape(weight.shape)
    grad_b = grad_out.to(cd).sum((0, 2, 3))
    grad_cols = torch.einsum("gok,ngol->ngkl", w, go).reshape(N, G, Cg, K * L)
    grad_mask = (grad_cols * val).sum(2).view(N, G * K, Ho, Wo)
    grad_val = grad_cols * m  # [N,G,Cg,P]
    # input: scatter each sample's gradient to its four corners with their bilinear weights
    contrib = grad_val.unsqueeze(3) * wts.unsqueeze(2)  # [N,G,Cg,4,P]
    grad_in = torch.zeros(N, G, Cg, H * W, dtype=cd, device=inp.device)
    index = idx.unsqueeze(2).expand(N, G, Cg, 4, K * L).reshape(N, G, Cg, 4 * K * L)
    grad_in.scatter_add_(3, index, contrib.reshape(N, G, Cg, 4 * K * L))
    grad_in = grad_in.view(N, C, H, W)
    # offset: d(val)/dy and d(val)/dx from the corner values (already zero outside the image)
    v = corners * valid.unsqueeze(2)  # [N,G,Cg,4,P]
    shp = (N, G, 1, K * L)
    lyv, lxv = ly.reshape(shp), lx.reshape(shp)
    dval_dy = (v[:, :, :, 2] - v[:, :, :, 0]) * (1 - lxv) + (v[:, :, :, 3] - v[:, :, :, 1]) * lxv
    dval_dx = (v[:, :, :, 1] - v[:, :, :, 0]) * (1 - lyv) + (v[:, :, :, 3] - v[:, :, :, 2]) * lyv
    gy = (grad_val * dval_dy).sum(2).view(N, G, K, 1, Ho, Wo)
    gx = (grad_val * dval_dx).sum(2).view(N, G, K, 1, Ho, Wo)
    grad_off = torch.cat([gy, gx], dim=3).view(N, 2 * G * K, Ho, Wo)
    outs = (grad_in.to(inp.dtype), grad_off.to(offset.dtype), grad_mask.to(mask.dtype),
            grad_w.to(weight.dtype), grad_b.to(weight.dtype))
    return tuple(t.contiguous() for t in outs)  # type: ignore[return-value]


def output_size(
    inp_shape: tuple[int, ...], weight_shape: tuple[int, ...], stride, padding, dilation
) -> tuple[int, int]:
    return (
        _out_size(inp_shape[2], weight_shape[2], stride[0], padding[0], dilation[0]),
        _out_size(inp_shape[3], weight_shape[3], stride[1], padding[1], dilation[1]),
    )
