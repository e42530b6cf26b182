"""The reference torch Dataset over a pack: sampler decisions -> crops -> flips -> RGB float tensors.

Owns `DatasetParams` and `ClipDataset`, the correctness reference and benchmark baseline for the fused loader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from edvr_fast.data.sampler import SampleParams, SamplePlan, SampleSpec, split_clips
from edvr_fast.data.store import ClipStore
from edvr_fast.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from edvr_fast.data.degrade_random import Degradation, DegradeParams

SPLITS = ("train", "val", "all")


@dataclass
class DatasetParams:
    """Which pack, which clips (split) and how samples are drawn; filled from the training config."""

    path: str | os.PathLike
    sample: SampleParams = field(default_factory=SampleParams)
    split: str = "train"  # "train" | "val" | "all"
    val_clips: tuple[str, ...] | None = None
    val_fraction: float | None = None
    split_seed: int = 0
    degrade: DegradeParams | None = None  # on-the-fly LQ from the GT window (training); None / disabled: pack LQ


def degraded_lq(store: ClipStore, spec: SampleSpec, deg: Degradation) -> np.ndarray:
    """uint8 [T, h, w, C] LQ window made from the GT crops of the sample's frames (before augmentation)."""
    from edvr_fast.data.degrade_random import apply

    window = np.stack([store.crop(spec.clip, f, "gt", *spec.gt_crop) for f in spec.frames])
    return apply(window, deg, store.scale)


def augment(frames: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    """Flip/transpose the last three (H, W, C) axes, in the documented order: hflip, vflip, transpose."""
    if hflip:
        frames = frames[..., :, ::-1, :]
    if vflip:
        frames = frames[..., ::-1, :, :]
    if transpose:
        frames = frames.swapaxes(-3, -2)
    return frames


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, C) BGR (or gray) -> float32 (..., C, H, W) RGB in [0, 1] (x / 255)."""
    if frames.shape[-1] == 3:
        frames = frames[..., ::-1]
    chw = np.moveaxis(frames, -1, -3)
    return torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32)).div_(255.0)


class ClipDataset(torch.utils.data.Dataset):
    """Samples of a pack: dict(lq=[T,C,h,w], gt=[C,H,W] float32 RGB, key, clip, frame, index).

    `ds[i]` uses the current epoch (`set_epoch`); `ds[(epoch, i)]` (from ClipSampler(with_epoch=True))
    names it explicitly. The LMDB opens lazily in each worker process; nothing is shared across fork.
    """

    def __init__(self, params: DatasetParams):
        if params.split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {params.split!r}")
        self.params = params
        self.store = ClipStore(params.path)
        names = [c.name for c in self.store.clips]
        train, val = split_clips(names, params.val_clips, params.val_fraction, params.split_seed)
        self.clip_ids = {"train": train, "val": val, "all": list(range(len(names)))}[params.split]
        if not self.clip_ids:
            raise DatasetError(
                f"the '{params.split}' split holds no clips",
                self.store.path,
                "set val_clips or val_fraction for a validation split",
            )
        self.plan = SamplePlan.from_store(self.store, params.sample, self.clip_ids, params.degrade)
        if len(self.plan) == 0:
            raise DatasetError(
                f"no clip of the '{params.split}' split is long enough for a {params.sample.num_frame}-frame "
                f"window with boundary 'inside'",
                self.store.path,
                "use another boundary policy or fewer frames",
            )
        self.epoch = 0
        # The pack was opened in the constructing process to validate it; workers re-open their own.
        self.store.close()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.plan)

    def spec(self, index: int, epoch: int | None = None) -> SampleSpec:
        return self.plan.decide(self.epoch if epoch is None else epoch, index)

    def load(self, spec: SampleSpec, deg: Degradation | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(lq [T,C,h,w], gt [C,H,W]) float32 RGB for a decided sample (LQ made from GT when `deg`)."""
        st = self.store
        if deg is not None:
            lq = degraded_lq(st, spec, deg)
        else:
            lq = np.stack([st.crop(spec.clip, f, "lq", *spec.lq_crop) for f in spec.frames])
        gt = st.crop(spec.clip, spec.center, "gt", *spec.gt_crop)
        lq = augment(lq, spec.hflip, spec.vflip, spec.transpose)
        gt = augment(gt, spec.hflip, spec.vflip, spec.transpose)
        return to_tensor(lq), to_tensor(gt)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        spec = self.plan.decide(epoch, int(index))
        lq, gt = self.load(spec, self.plan.degradation(epoch, int(index)))
        name = self.store.clips[spec.clip].name
        return {
            "lq": lq,
            "gt": gt,
            "key": f"{name}/{spec.center}",
            "clip": name,
            "frame": spec.center,
            "index": int(index),
        }
