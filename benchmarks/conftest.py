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
    """Time `fn` (inner calls per round, one device sync per round) and record it for the ratio table.

    Both tables report the time of one call of `fn` (one batch, one step, one frame: the unit every case
    of a group must share): pytest-benchmark divides a round by its `inner` iterations, and so does ours.
    """
    calls = [0]

    def one():  # one call per iteration; the device sync closes each round of `inner` calls
        fn()
        calls[0] += 1
        if calls[0] % inner == 0:
            _sync(device)

    if getattr(benchmark, "disabled", False):  # --benchmark-disable (CI's smoke pass): one call, no timing
        fn()
        _sync(device)
        return None
    for _ in range(warmup * inner):  # first calls: kernel loading, cuBLAS/cuDNN handles, autotuning
        one()
    benchmark.group = group
    benchmark.extra_info.update(dict(impl=impl, inner=inner, device=device, **info))
    if device == "cuda":
        benchmark.extra_info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        benchmark.extra_info["tf32_cudnn"] = torch.backends.cudnn.allow_tf32
        benchmark.extra_info["gpu"] = torch.cuda.get_device_name()
    t0 = time.perf_counter()
    benchmark.pedantic(one, rounds=rounds, iterations=inner, warmup_rounds=0)
    _sync(device)
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(stats, "stats", None) is None:  # --benchmark-disable: ran once, no timing
        return
    median_ms = stats.stats.median * 1e3  # already per call: pytest-benchmark divided by `inner`
    _RESULTS[group][impl] = dict(median_ms=median_ms, wall_s=time.perf_counter() - t0, **benchmark.extra_info)
    return median_ms


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
        # Optional columns: a rate for cases that say their unit (frame, step), peak GPU memory if measured.
        rate = f"{1e3 / r['median_ms']:9.2f} {r['unit']}s/s" if r.get("unit") else ""
        peak = f"  peak {r['peak_gib']:.2f} GiB" if r.get("peak_gib") is not None else ""
        tr.write_line(f"{r['group']:<48} {r['impl']:<22} {r['median_ms']:10.4f} ms   {ratio:>7}{rate}{peak}")
    path = os.environ.get("EDVR_FAST_BENCH_SUMMARY")
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=1)


@pytest.fixture
def measure(benchmark):
    """measure(fn, group=, impl=, device=, inner=, rounds=, **info): time fn and record it for the ratios;
    returns the median ms of one call (None under --benchmark-disable)."""

    def call(fn, **kwargs):
        return _measure(benchmark, fn, **kwargs)

    return call


@pytest.fixture
def cuda_only():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
