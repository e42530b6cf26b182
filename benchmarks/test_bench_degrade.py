"""Cost of on-the-fly degradation (data.degrade): the fused loader with it on vs off, and vs the reference
ClipDataset + DataLoader(num_workers=2) with it on, on the same x4 pack.

A GT-only tree (480x640 frames) packed with `--degrade bicubic --scale 4`; 5-frame clips, 256x256 GT crops
(64x64 LQ), batch 16, raw storage. "ours" is the fused loader with the default `data.degrade` section enabled
(blur 0.5, Gaussian noise 0.5, Poisson 0.2, JPEG 0.3, H.264 0.3); ratios below 1 are the price of degrading.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edvr_fast.data.dataset import ClipDataset, DatasetParams
from edvr_fast.data.degrade_random import DegradeParams
from edvr_fast.data.loader import FusedClipLoader
from edvr_fast.data.sampler import ClipSampler, SampleParams

BATCH, H, W, FRAMES, CLIPS = 16, 480, 640, 8, 4
DEFAULTS = DegradeParams(enabled=True)
EVERY_STEP = DegradeParams(enabled=True, blur_prob=1, gaussian_prob=1, poisson_prob=1, jpeg_prob=1, video_prob=1)


@pytest.fixture(scope="module")
def sr_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edvr_fast.data.pack import pack

    root = tmp_path_factory.mktemp("degrade_bench")
    rng = np.random.default_rng(0)
    for c in range(CLIPS):
        folder = root / "hr" / f"clip{c}"
        folder.mkdir(parents=True)
        for i in range(FRAMES):
            small = rng.integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8)
            img = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
            assert cv2.imwrite(str(folder / f"{i:06d}.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    pack(root / "hr", root / "pack", degrade="bicubic", scale=4, progress=False, workers=2)
    return root / "pack"


def _params(path: Path, degrade: DegradeParams | None) -> DatasetParams:
    return DatasetParams(path, SampleParams(num_frame=5, gt_size=256, seed=0), split="all", degrade=degrade)


def _endless_fused(loader: FusedClipLoader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _endless_reference(params: DatasetParams):
    ds = ClipDataset(params)
    sampler = ClipSampler(len(ds), seed=0, with_epoch=True)
    dl = torch.utils.data.DataLoader(ds, batch_size=BATCH, sampler=sampler, drop_last=True, num_workers=2,
                                     persistent_workers=True, multiprocessing_context="fork", prefetch_factor=2)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        for b in dl:
            yield b["lq"], b["gt"]
        epoch += 1


def _consume(batches) -> None:
    lq, gt = next(batches)
    assert lq.shape == (BATCH, 5, 3, 64, 64) and gt.shape == (BATCH, 3, 256, 256)


IMPLS = {
    "ours": ("fused", DEFAULTS),
    "fused, degradation off (pack LQ)": ("fused", None),
    "fused, every step on": ("fused", EVERY_STEP),
    "ClipDataset+DataLoader(2 workers), degradation on": ("reference", DEFAULTS),
}


@pytest.mark.parametrize("impl", list(IMPLS))
def test_degradation_cost(measure, sr_pack: Path, impl: str) -> None:
    kind, degrade = IMPLS[impl]
    params = _params(sr_pack, degrade)
    inner = 20 if degrade is None else 3
    info = dict(batch=BATCH, cpu_count=os.cpu_count(), clips_per_call=BATCH, degrade=degrade is not None)
    group = f"degrade x4 5x64x64 LQ from 256x256 GT crops, batch {BATCH}"
    loader = None
    if kind == "fused":
        loader = FusedClipLoader(params, BATCH, num_threads=2)
        batches = _endless_fused(loader)
    else:
        batches = _endless_reference(params)
    # `inner` batches per round; clips/s = 16000 / median_ms.
    measure(lambda: _consume(batches), group=group, impl=impl, inner=inner, rounds=3, **info)
    batches.close()
    if loader is not None:
        loader.close()
