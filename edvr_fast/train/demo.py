"""The built-in default run (`python -m edvr_fast.train` with none of --data, --preset, --config): its own
settings, applied over the schema's defaults (which are those of user runs) and under any `--set`.

Video deblurring (scale 1) on the synthetic set, a model small enough to train visibly in under 5 minutes on
two CPU cores. Deblurring starts near the identity (the residual adds to the blurred centre frame), so
learning shows as PSNR over the input; x4 SR starts below bicubic and needs far longer. Measured there (1000
iterations): a constant 2e-3 learning rate with an EMA of the weights ends +0.37 dB over the input, a cosine
decay to 0 +0.24 dB and a cosine from 4e-3 +0.10 dB (EDVR leaves the identity slowly; a decaying rate stalls
it). None of this suits real data: runs with --data / --preset / --config never see these values.
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
    "train.iters": 1000,
    "train.ema_decay": 0.99,
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
