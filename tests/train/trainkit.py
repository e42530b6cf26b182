"""Tiny training configs shared by the training tests (a step takes milliseconds on CPU)."""

from __future__ import annotations

import copy

from edvr_fast.config import TrainConfig, load_dict

# num_feat 8, 3 frames, one block each side, x4 on 8x8 input crops: a training step takes milliseconds.
TINY = {
    "model": {"num_feat": 8, "num_frame": 3, "deformable_groups": 1, "num_extract_block": 1,
              "num_reconstruct_block": 1, "scale": 4},
    "data": {"sample": {"num_frame": 3, "gt_size": 32}, "synthetic_clips": 4, "synthetic_val_clips": 1,
             "synthetic_frames": 6, "synthetic_size": 32},
    "loader": {"batch_size": 2, "num_workers": 0},
    "train": {"iters": 6},
    "val": {"every": 0, "max_samples": 2, "save_samples": 1},
    "log": {"every": 2, "progress": False},
    "checkpoint": {"every": 3, "keep": 2},
}


def tiny_dict(**sections) -> dict:
    """TINY with sections merged in, e.g. tiny_dict(train={"iters": 4})."""
    d = copy.deepcopy(TINY)
    for name, values in sections.items():
        if isinstance(values, dict):
            d.setdefault(name, {}).update(values)
        else:
            d[name] = values
    return d


def tiny_config(**sections) -> TrainConfig:
    return load_dict(tiny_dict(**sections))
