"""A small DCN forward+backward for compute-sanitizer: offsets far outside the image, fp32 and bf16."""

from __future__ import annotations

import torch

from edvr_fast.ops import modulated_deform_conv2d


def main() -> None:
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        N, C, H, W, G = 3, 16, 11, 13, 4
        x = torch.randn(N, C, H, W, device="cuda", dtype=dtype, requires_grad=True)
        off = (torch.randn(N, 2 * G * 9, H, W, device="cuda") * 12).to(dtype).requires_grad_()
        off.data[:, :, 0, 0] = 1e4   # far outside
        off.data[:, :, 1, 1] = -1.0  # exactly one pixel outside at the border taps
        mask = torch.rand(N, G * 9, H, W, device="cuda", dtype=dtype, requires_grad=True)
        w = torch.randn(8, C, 3, 3, device="cuda", dtype=dtype, requires_grad=True)
        b = torch.randn(8, device="cuda", dtype=dtype, requires_grad=True)
        out = modulated_deform_conv2d(x, off, mask, w, b, 1, 1, 1, 1, G)
        out.square().sum().backward()
        torch.cuda.synchronize()
        assert all(torch.isfinite(t.grad.float()).all() for t in (x, off, mask, w, b))
    print("sanitizer case: ran fp32, bf16, fp16 forward+backward")


if __name__ == "__main__":
    main()
