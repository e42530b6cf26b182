"""`python -m edvr_fast.ops`: self-check of the installed operator (backend, forward, backward, parity)."""

from __future__ import annotations

import sys
import time

import torch

from edvr_fast.ops import backend, fallback, modulated_deform_conv2d


def main() -> int:
    info = backend()
    print("edvr_fast operator backends:", ", ".join(f"{k}={v}" for k, v in info.items()))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ok = True
    for device in devices:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2, 16, 20, 24, generator=g).to(device).requires_grad_()
        off = (torch.randn(2, 2 * 4 * 9, 20, 24, generator=g) * 3).to(device).requires_grad_()
        m = torch.rand(2, 4 * 9, 20, 24, generator=g).to(device).requires_grad_()
        w = (torch.randn(16, 16, 3, 3, generator=g) / 12).to(device).requires_grad_()
        t0 = time.perf_counter()
        out = modulated_deform_conv2d(x, off, m, w, None, 1, 1, 1, 1, 4)
        out.square().mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) * 1e3
        ref = fallback.forward(*(t.detach().double().cpu() for t in (x, off, m, w)), None, (1, 1), (1, 1),
                               (1, 1), 1, 4)
        err = float((out.detach().double().cpu() - ref).norm() / ref.norm())
        finite = all(torch.isfinite(t.grad).all() for t in (x, off, m, w))
        good = err < 1e-5 and finite
        ok &= good
        print(f"{device}: forward+backward {tuple(x.shape)} in {dt:.1f} ms, relative error vs float64 "
              f"{err:.2e}, gradients finite: {finite} -> {'OK' if good else 'FAILED'}")
    print("self-check passed" if ok else "self-check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
