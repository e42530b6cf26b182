"""Loader benchmark: FusedClipLoader vs ClipDataset + DataLoader(num_workers=2) on the same packs.

5-frame clips, 256x256 crops from 480x640 deblur pairs, batch 16, raw, png and jpg storage (the same frames);
clips/s in extra_info, and which decode path ours used (FusedClipLoader.decode_backend). `png` is what the
pack writes (banded PNG, FORMAT.md); `png_plain` the same frames as cv2's PNGs (a pack made without the
extension), which ours must read whole-row from the top.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edvr_fast.data.dataset import ClipDataset, DatasetParams
from edvr_fast.data.loader import FusedClipLoader
from edvr_fast.data.sampler import ClipSampler, SampleParams

BATCH, H, W, FRAMES, CLIPS = 16, 480, 640, 8, 4


def _frame(rng: np.random.Generator) -> np.ndarray:
    # Smooth structure plus mild noise: compresses like a photo (about 2:1 in PNG), not like a flat test card.
    small = rng.integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8)
    img = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    img += rng.integers(-6, 7, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def bench_packs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edvr_fast.data.pack import pack

    root = tmp_path_factory.mktemp("loader_bench")
    rng = np.random.default_rng(0)
    for c in range(CLIPS):
        for side in ("input", "gt"):
            folder = root / "src" / side / f"clip{c}"
            folder.mkdir(parents=True)
            for i in range(FRAMES):
                assert cv2.imwrite(str(folder / f"{i:06d}.png"), _frame(rng), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    storages = ("raw", "png", "jpg")
    packs = {s: pack(root / "src", root / s, storage=s, progress=False, workers=2) and root / s for s in storages}
    from edvr_fast.data import pack as pack_module

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pack_module, "_banded_png_encoder", lambda: None)  # cv2.imencode, as without the extension
        pack(root / "src", root / "png_plain", storage="png", progress=False, workers=2)
    packs["png_plain"] = root / "png_plain"
    return packs


def _params(path: Path) -> DatasetParams:
    return DatasetParams(path, SampleParams(num_frame=5, gt_size=256, seed=0), split="all")


def _consume(batches, n: int) -> None:
    for _ in range(n):
        lq, gt = next(batches)
        assert lq.shape == (BATCH, 5, 3, 256, 256) and gt.shape == (BATCH, 3, 256, 256)


def _endless_fused(loader: FusedClipLoader):
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _endless_reference(path: Path):
    ds = ClipDataset(_params(path))
    sampler = ClipSampler(len(ds), seed=0, with_epoch=True)
    dl = torch.utils.data.DataLoader(
        ds,
        batch_size=BATCH,
        sampler=sampler,
        drop_last=True,
        num_workers=2,
        persistent_workers=True,
        pin_memory=torch.cuda.is_available(),
        multiprocessing_context="fork",
        prefetch_factor=2,
    )
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        for b in dl:
            yield b["lq"], b["gt"]
        epoch += 1


REFERENCE = "ClipDataset+DataLoader(2 workers)"


@pytest.mark.parametrize("impl", ["ours", REFERENCE])
@pytest.mark.parametrize("storage", ["raw", "png", "png_plain", "jpg"])
def test_loader_throughput(measure, bench_packs: dict[str, Path], storage: str, impl: str) -> None:
    path = bench_packs[storage]
    # Batches per timed round: enough to average over prefetch start-up, small enough for ~60 s in all.
    inner = {"raw": 30, "jpg": 8}.get(storage, 6) if impl == "ours" else {"raw": 6}.get(storage, 4)
    info = dict(storage=storage, batch=BATCH, cpu_count=os.cpu_count(), clips_per_call=BATCH)
    group = f"loader {storage} 5x256x256 from 480x640, batch {BATCH}"
    if impl == "ours":
        loader = FusedClipLoader(_params(path), BATCH, num_threads=2)
        info["decode_backend"] = loader.decode_backend
        batches = _endless_fused(loader)
    else:
        batches = _endless_reference(path)
    # `inner` batches per round; both tables report one batch (the conftest divides by inner): clips/s = 16000 / ms.
    measure(lambda: _consume(batches, 1), group=group, impl=impl, inner=inner, rounds=3, **info)
    batches.close()
    if impl == "ours":
        loader.close()
