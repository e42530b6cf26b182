"""Training and validation data for a run: the pack to use (the built-in synthetic set by default), the loader
choice (fused C++ loader, else the reference ClipDataset + DataLoader) and exact resume of the data position.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edvr_fast.config import TrainConfig
from edvr_fast.data.dataset import ClipDataset, DatasetParams
from edvr_fast.data.meta import load_meta
from edvr_fast.data.sampler import ClipSampler, SampleParams, split_clips
from edvr_fast.data.synthetic import SyntheticParams, clip_name, ensure_dataset
from edvr_fast.errors import ConfigError, ExtensionError
from edvr_fast.train.distributed import DistInfo

# With no split configured, a pack of n >= 2 clips holds out max(1, round(AUTO_VAL_FRACTION * n)) clips,
# chosen by a hash of (data.split_seed, clip name): see edvr_fast.data.sampler.split_clips.
AUTO_VAL_FRACTION = 0.1


@dataclasses.dataclass
class DataSource:
    pack: Path
    frames: Path | None  # source frames of the synthetic set (for the inference example), else None
    val_clips: tuple[str, ...] | None
    val_fraction: float | None
    synthetic: bool
    train_names: tuple[str, ...] = ()
    val_names: tuple[str, ...] = ()
    how: str = ""  # how the split was chosen, in words
    no_val: str | None = None  # why this run does not validate; None: it does

    def clip_lists(self) -> dict[str, object]:
        """What the run folder's clips.json holds."""
        return {"pack": str(self.pack), "split": self.how, "train": list(self.train_names),
                "val": list(self.val_names)}


def synthetic_params(cfg: TrainConfig) -> SyntheticParams:
    d = cfg.data
    return SyntheticParams(num_clips=d.synthetic_clips, num_frames=d.synthetic_frames, height=d.synthetic_size,
                           width=d.synthetic_size, scale=cfg.model.scale, blur=d.synthetic_blur,
                           max_speed=d.synthetic_speed, noise=d.synthetic_noise, seed=cfg.train.seed)


def _split(src: DataSource, names: list[str], cfg: TrainConfig) -> DataSource:
    """`src` with the clip names of each split and the words for how they were chosen filled in."""
    d = cfg.data
    if not cfg.val.enabled:
        return dataclasses.replace(src, val_clips=None, val_fraction=None, train_names=tuple(names),
                                   how="no validation (val.enabled=false): every clip trains",
                                   no_val="val.enabled=false")
    if src.val_clips is not None:
        how = "data.val_clips" if d.val_clips is not None else "the synthetic set's last data.synthetic_val_clips"
    elif src.val_fraction is not None:
        how = f"data.val_fraction={src.val_fraction} chosen by data.split_seed={d.split_seed}"
    elif len(names) >= 2:
        k = max(1, round(AUTO_VAL_FRACTION * len(names)))
        src = dataclasses.replace(src, val_fraction=k / len(names))
        how = (f"automatic: {k} of {len(names)} clips (max(1, round(0.1 n))) held out, chosen by "
               f"data.split_seed={d.split_seed}")
    else:
        return dataclasses.replace(src, train_names=tuple(names), no_val="the pack holds a single clip",
                                   how="no validation: the pack holds a single clip, which trains")
    train, val = split_clips(names, src.val_clips, src.val_fraction, d.split_seed)
    val_names = tuple(names[i] for i in val)
    # From here on the split is named explicitly (the datasets and clips.json agree by construction).
    return dataclasses.replace(src, val_clips=val_names, val_fraction=None,
                               train_names=tuple(names[i] for i in train), val_names=val_names, how=how)


def resolve_source(cfg: TrainConfig, progress: bool) -> DataSource:
    """The configured pack, or the synthetic set (rendered and packed into the cache on first use), with
    its train / validation split decided."""
    d = cfg.data
    if d.path is not None:
        src = DataSource(Path(d.path), None, d.val_clips, d.val_fraction, False)
    else:
        params = synthetic_params(cfg)
        pack, frames = ensure_dataset(params, progress=progress)
        val = d.val_clips
        if val is None and d.val_fraction is None:
            val = tuple(clip_name(i) for i in range(params.num_clips - d.synthetic_val_clips, params.num_clips))
        src = DataSource(pack, frames, val, d.val_fraction, True)
    meta = load_meta(src.pack)
    if meta.scale != cfg.model.scale:
        kind = "deblurring / restoration (scale 1)" if meta.scale == 1 else f"x{meta.scale} super-resolution"
        raise ConfigError(f"the pack is {kind} but model.scale={cfg.model.scale}", src.pack,
                          "pick a preset of that scale (--preset edvr-m-deblur, edvr-m-sr4, ...; see "
                          "edvr_fast.models.preset_names) or set model.scale")
    return _split(src, [c.name for c in meta.clips], cfg)


def write_clip_lists(out: Path, src: DataSource) -> Path:
    """clips.json in the run folder (written whole, then renamed); returns its path."""
    path = out / "clips.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(src.clip_lists(), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def describe_clips(src: DataSource, shown: int = 8) -> str:
    """One line per split for the console (long lists cut, the file has them all)."""
    def names(xs: tuple[str, ...]) -> str:
        return ", ".join(xs[:shown]) + (f", ... ({len(xs) - shown} more)" if len(xs) > shown else "")

    lines = [f"split: {src.how}", f"  train clips ({len(src.train_names)}): {names(src.train_names)}"]
    if src.no_val is None:
        lines.append(f"  validation clips ({len(src.val_names)}): {names(src.val_names)}")
    return "\n".join(lines)


def dataset_params(cfg: TrainConfig, src: DataSource, split: str, sample: SampleParams | None = None) -> DatasetParams:
    # data.degrade makes training LQ from GT on the fly; validation always scores the pack's deterministic LQ.
    return DatasetParams(path=src.pack, sample=sample or cfg.data.sample, split=split, val_clips=src.val_clips,
                         val_fraction=src.val_fraction, split_seed=cfg.data.split_seed,
                         degrade=cfg.data.degrade if split == "train" else None)


def fused_loader_class() -> Any | None:
    """The fused loader class when it is built and importable, else None."""
    try:
        import edvr_fast.data as data

        return data.FusedClipLoader
    except Exception:  # not merged yet, extension missing or built for another torch: use the reference
        return None


class TrainBatches:
    """An endless stream of (lq [B,T,C,h,w], gt [B,C,H,W]) for this rank, epoch after epoch.

    `state_dict()` records the epoch and the batches consumed in it, so a resumed run continues with
    exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, cfg: TrainConfig, src: DataSource, info: DistInfo, notice: Callable[[str], None]):
        self.cfg, self.info = cfg, info
        self.batch_size = cfg.loader.batch_size
        self.params = dataset_params(cfg, src, "train")
        kind = cfg.loader.kind
        self.epoch, self.consumed = 0, 0  # consumed: batches of the current epoch already handed out
        self.keys: list[str] | None = None  # sample keys ("clip/centre") of the last batch
        self.kind = "reference"
        fused = fused_loader_class() if kind in ("auto", "fused") else None
        why = "not in this build"
        if fused is not None:
            try:
                self.loader = fused(self.params, self.batch_size, rank=info.rank, world_size=info.world_size,
                                    num_threads=max(1, cfg.loader.num_workers), prefetch=cfg.loader.prefetch,
                                    device=info.device if info.device.type == "cuda" else None,
                                    drop_last=True, shuffle=True)
                self.kind = "fused"
                self.per_epoch = len(self.loader)
            except ExtensionError as exc:  # the class exists but its compiled part does not load
                why = str(exc)
        if self.kind != "fused" and kind == "fused":
            raise ConfigError(f"loader.kind=fused but the fused loader is not available: {why}",
                              hint="build the extension (pip install --no-build-isolation .) or use "
                                   "loader.kind=reference")
        if self.kind != "fused" and kind == "auto":
            notice(f"fused loader not available ({why}): using the reference ClipDataset + DataLoader")
        if self.kind == "reference":
            self.dataset = ClipDataset(self.params)
            self.sampler = ClipSampler(len(self.dataset), shuffle=True, seed=cfg.data.sample.seed, rank=info.rank,
                                       world_size=info.world_size, with_epoch=True)
            self.per_epoch = self.sampler.shard_size // self.batch_size
            workers = cfg.loader.num_workers
            self.loader = torch.utils.data.DataLoader(
                self.dataset, batch_size=self.batch_size, sampler=self.sampler, num_workers=workers,
                drop_last=True, pin_memory=info.device.type == "cuda", persistent_workers=workers > 0,
                prefetch_factor=cfg.loader.prefetch if workers > 0 else None)
        if self.per_epoch < 1:
            raise ConfigError(f"loader.batch_size={self.batch_size} is larger than the training samples per "
                              f"process; lower it", hint="or add clips / frames to the data set")
        self._resumed = False

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"kind": self.kind, "epoch": self.epoch, "consumed": self.consumed}
        if self.kind == "fused":
            state["loader"] = self.loader.state_dict()
        else:
            state["sampler"] = self.sampler.state_dict(consumed=self.consumed * self.batch_size)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise ConfigError(f"the checkpoint was written with the {state['kind']} loader, this run uses the "
                              f"{self.kind} loader", hint=f"resume with loader.kind={state['kind']}")
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        if self.kind == "fused":
            self.loader.load_state_dict(state["loader"])
        else:
            self.sampler.load_state_dict(state["sampler"])
        self._resumed = True

    def close(self) -> None:
        """Stop the fused loader's threads (DataLoader workers end with the iterator)."""
        if self.kind == "fused":
            self.loader.close()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dev = self.info.device
        while True:
            if not self._resumed:  # a resumed epoch continues where it stopped; set_epoch would rewind it
                self.consumed = 0
                if self.kind == "fused":
                    self.loader.set_epoch(self.epoch)
                else:
                    self.sampler.set_epoch(self.epoch)
            self._resumed = False
            for batch in self.loader:
                if self.kind == "fused":
                    lq, gt = batch
                    self.keys = self.loader.sample_keys(self.loader.last_indices)
                else:
                    lq, gt, self.keys = batch["lq"], batch["gt"], batch["key"]
                self.consumed += 1
                yield lq.to(dev, non_blocking=True), gt.to(dev, non_blocking=True)
            self.epoch += 1


def val_samples(cfg: TrainConfig, src: DataSource, info: DistInfo) -> tuple[ClipDataset, list[int]]:
    """Validation frames (whole, unaugmented), evenly spread and capped at val.max_samples; this rank's share."""
    s = cfg.data.sample
    sample = SampleParams(num_frame=s.num_frame, interval_list=(1,), boundary=s.boundary, random_reverse=False,
                          gt_size=None, use_hflip=False, use_rot=False, seed=0)
    ds = ClipDataset(dataset_params(cfg, src, "val", sample))
    n = len(ds)
    cap = cfg.val.max_samples
    order = np.arange(n) if cap is None or cap >= n else np.unique(np.linspace(0, n - 1, cap).round().astype(int))
    return ds, [int(i) for i in order[info.rank :: info.world_size]]
