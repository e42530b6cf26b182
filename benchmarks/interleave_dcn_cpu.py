"""A second view of the CPU DCN rows of test_bench_dcn.py for noisy shared machines: every implementation
runs once per round, round after round (so a slow spell of the machine hits all of them alike), and the
best of ROUNDS rounds is reported with the ratios. Not a test; run it as
    chrt -f 10 python benchmarks/interleave_dcn_cpu.py [90x160] [4x64] [g2]
with ROUNDS (default 15) and KS (default nhwc,columns: the kernels by EDVR_FAST_DCN_KERNEL name)."""

from __future__ import annotations

import os
import sys
import time

import torch

from edvr_fast.ops import modulated_deform_conv2d

SHAPES = {"90x160": (1, 64, 90, 160, 8), "4x64": (4, 64, 64, 64, 8), "g2": (20, 16, 32, 32, 2)}


def main() -> None:
    names = [a for a in sys.argv[1:] if a in SHAPES] or list(SHAPES)
    rounds = int(os.environ.get("ROUNDS", "15"))
    kernels = os.environ.get("KS", "nhwc,columns").split(",")
    torch.manual_seed(0)
    for name in names:
        N, C, H, W, G = SHAPES[name]
        x = torch.randn(N, C, H, W, requires_grad=True)
        off = (torch.randn(N, 18 * G, H, W) * 2).requires_grad_(True)
        m = torch.rand(N, 9 * G, H, W, requires_grad=True)
        w = (torch.randn(C, C, 3, 3) / 24).requires_grad_(True)
        b = torch.randn(C, requires_grad=True)

        def conv_fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(x, w, b, 1, 1)

        def conv_fwd_bwd():
            o = torch.nn.functional.conv2d(x, w, b, 1, 1)
            o.backward(torch.ones_like(o))

        def dcn_fwd():
            with torch.no_grad():
                modulated_deform_conv2d(x, off, m, w, b, 1, 1, 1, 1, G)

        def dcn_fwd_bwd():
            o = modulated_deform_conv2d(x, off, m, w, b, 1, 1, 1, 1, G)
            o.backward(torch.ones_like(o))

        cases = {"conv2d fwd": (None, conv_fwd), "conv2d fwd+bwd": (None, conv_fwd_bwd)}
        for k in kernels:
            cases[f"{k} fwd"] = (k, dcn_fwd)
            cases[f"{k} fwd+bwd"] = (k, dcn_fwd_bwd)
        best = dict.fromkeys(cases, float("inf"))
        for r in range(rounds + 1):  # round 0 warms up
            for key, (kernel, fn) in cases.items():
                if kernel:
                    os.environ["EDVR_FAST_DCN_KERNEL"] = kernel
                t0 = time.perf_counter()
                fn()
                if r:
                    best[key] = min(best[key], (time.perf_counter() - t0) * 1e3)
        k0 = kernels[0]
        line = " ".join(f"{k}={v:.2f}ms" for k, v in best.items())
        ratios = (f"{k0}/conv2d fwd {best[k0 + ' fwd'] / best['conv2d fwd']:.2f}x, "
                  f"fwd+bwd {best[k0 + ' fwd+bwd'] / best['conv2d fwd+bwd']:.2f}x")
        for k in kernels[1:]:
            ratios += (f"; {k}/{k0} fwd {best[k + ' fwd'] / best[k0 + ' fwd']:.2f}x, "
                       f"fwd+bwd {best[k + ' fwd+bwd'] / best[k0 + ' fwd+bwd']:.2f}x")
        print(f"{name}: {line} | {ratios}", flush=True)


if __name__ == "__main__":
    main()
