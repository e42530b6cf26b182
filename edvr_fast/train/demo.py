"""The built-in default run (`python -m edvr_fast.train` with none of --data, --preset, --config): its own
settings, applied over the schema's defaults (which are those of user runs) and under any `--set`.

Video deblurring (scale 1) on the synthetic set, a model small enough to train visibly in under 5 minutes on
two CPU cores. Deblurring starts near the identity (the residual adds to the blurred centre frame), so
learning shows as PSNR over the input. Why it once ended only +0.37 dB over it (500-iteration runs on the
fixed data, 1 thread, validation gain): the near-L1 Charbonnier (eps 1e-3) keeps an edge whose sharp
position the net is unsure of where it is (the median), so EDVR stayed at the identity (+0.02 dB); eps 0.1
is quadratic for errors under 0.1 (the mean, as PSNR wants): +0.24 dB; and an EMA of the weights (0.99)
lags a model still improving fast: without it +0.53 dB. The data first had to show its scenes: generator 1
tiled every sprite over the whole frame (edvr_fast/data/synthetic.py). None of this suits real data: runs
with --data / --preset / --config never see these values. Now: +1.91 dB at 1000 iterations (BENCHMARKS.md,
issue 15, has every run).
"""

from __future__ import annotations

from typing import Any

# dotted config key -> value (exactly as `--set KEY=VALUE` would give it)
DEMO: dict[str, Any] = {
    "model.num_feat": 16,
    "model.num_frame": 5,
    "model.deformable_groups": 2,
    "model.num_extract_block": 1,
    "model.num_reconstruct_block": 3,
    "model.center_frame_idx": None,
    "model.hr_in": False,
    "model.with_predeblur": False,
    "model.with_tsa": True,
    "model.scale": 1,
    "data.sample.num_frame": 5,
    "data.sample.gt_size": 32,
    "optim.lr": 2e-3,
    "schedule.kind": "constant",
    "loss.eps": 0.1,
    "train.iters": 1000,
    "val.every": 250,
    "checkpoint.every": 250,
    "log.every": 25,
}


def demo_dict() -> dict[str, Any]:
    """DEMO as a nested config dict (the form `load_dict` reads)."""
    out: dict[str, Any] = {}
    for key, value in DEMO.items():
        node = out
        *parents, last = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    return out
