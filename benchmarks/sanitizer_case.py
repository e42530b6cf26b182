"""A small DCN forward+backward for compute-sanitizer, with both CUDA kernels (the default column kernel and
EDVR_FAST_DCN_KERNEL=nhwc): offsets far outside the image, fp32, bf16 and fp16, 4 and 8 channels per offset group
(the NHWC kernel's general and vector paths), NCHW and channels_last."""

from __future__ import annotations

import os

import torch

from edvr_fast.ops import modulated_deform_conv2d


def run(C: int, G: int, dtype: torch.dtype, channels_last: bool) -> None:
    N, H, W = 3, 11, 13
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(N, C, H, W, device="cuda", dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
    off = (torch.randn(N, 2 * G * 9, H, W, device="cuda") * 12).to(dtype)
    off[:, :, 0, 0] = 1e4   # far outside
    off[:, :, 1, 1] = -1.0  # exactly one pixel outside at the border taps
    off = off.contiguous(memory_format=fmt).requires_grad_()
    mask = torch.rand(N, G * 9, H, W, device="cuda", dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
    w = torch.randn(8, C, 3, 3, device="cuda", dtype=dtype, requires_grad=True)
    b = torch.randn(8, device="cuda", dtype=dtype, requires_grad=True)
    out = modulated_deform_conv2d(x, off, mask, w, b, 1, 1, 1, 1, G)
    out.square().sum().backward()
    torch.cuda.synchronize()
    assert all(torch.isfinite(t.grad.float()).all() for t in (x, off, mask, w, b))


def main() -> None:
    torch.manual_seed(0)
    for kernel in ("columns", "nhwc"):
        os.environ["EDVR_FAST_DCN_KERNEL"] = kernel  # read by the op on each call
        for C, G in ((16, 4), (16, 2)):
            for dtype in (torch.float32, torch.bfloat16, torch.float16):
                run(C, G, dtype, channels_last=kernel == "nhwc" and G == 2)
        print(f"sanitizer case: {kernel} kernel ran fp32, bf16, fp16 forward+backward")


if __name__ == "__main__":
    main()
