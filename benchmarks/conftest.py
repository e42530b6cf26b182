"""Benchmark convention: every case times ours and its baselines in the same run and reports ratios.

A case takes the `measure` fixture and calls `measure(fn, group=..., impl=...)`;
`impl` is "ours" or the baseline's name.
Cases that share a `group` are compared at the end of the run: time(baseline) / time(ours), so a
ratio above 1 means ours is faster. Set EDVR_FAST_BENCH_SUMMARY=path.json to also write the table.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict

import pytest
import torch

_RESULTS: dict[str, dict[str, dict]] = defaultdict(dict)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _measure(benchmark, fn, *, group: str, impl: str, device: str = "cpu", inner: int = 1, rounds: int = 5,
            warmup: int = 1, **info) -> None:
    """Time `fn` (inner calls per round, one device sync per round) and record it for the ratio table."""

    def run():
        for _ in range(inner):
            fn()
        _sync(device)

    for _ in range(warmup):  # first calls: kernel loading, cuBLAS/cuDNN handles, autotuning
        run()
    benchmark.group = group
    benchmark.extra_info.update(dict(impl=impl, inner=inner, device=device, **info))
    if device == "cuda":
        benchmark.extra_info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        benchmark.extra_info["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
    t0 = time.perf_counter()
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(stats, "stats", None) is None:  # --benchmark-disable: ran once, no timing
        return
    median_ms = stats.stats.median / inner * 1e3
    _RESULTS[group][impl] = dict(median_ms=median_ms, wall_s=time.perf_counter() - t0, **benchmark.extra_info)


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    rows = []
    for group, impls in sorted(_RESULTS.items()):
        ours = impls.get("ours")
        for impl, r in sorted(impls.items(), key=lambda kv: kv[0] != "ours"):
            ratio = (r["median_ms"] / ours["median_ms"]) if ours and impl != "ours" else None
            rows.append(dict(group=group, impl=impl, median_ms=r["median_ms"], baseline_over_ours=ratio,
                             **{k: v for k, v in r.items() if k not in ("median_ms", "impl", "wall_s")}))
    tr = terminalreporter
    tr.section("edvr_fast benchmark ratios (baseline time / our time; > 1 means ours is faster)")
    for r in rows:
        ratio = f"{r['baseline_over_ours']:.2f}x" if r["baseline_over_ours"] is not None else "-"
        tr.write_line(f"{r['group']:<48} {r['impl']:<22} {r['median_ms']:10.4f} ms   {ratio}")
    path = os.environ.get("EDVR_FAST_BENCH_SUMMARY")
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


@pytest.fixture
def measure(benchmark):
    """measure(fn, group=, impl=, device=, inner=, rounds=, **info): time fn and record it for the ratios."""

    def call(fn, **kwargs):
        _measure(benchmark, fn, **kwargs)

    return call


@pytest.fixture
def cuda_only():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
