"""ClipDataset: exact pixels after crop/flip/transpose/RGB, same decision for all frames, worker-count
independence, splits, and the motivating seed layout end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from clipkit import frame_pixels

from edvr_fast.data.dataset import ClipDataset, DatasetParams, augment, to_tensor
from edvr_fast.data.pack import pack
from edvr_fast.data.sampler import ClipSampler, SampleParams
from edvr_fast.errors import ConfigError, DatasetError

SHAPES = {0: (16, 20), 1: (16, 24), 2: (20, 20)}  # small_pack: clip index -> lq (H, W), scale 2


def _expected(img: np.ndarray, crop, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    t, l, h, w = crop
    x = img[t : t + h, l : l + w]
    if hflip:
        x = x[:, ::-1]
    if vflip:
        x = x[::-1]
    if transpose:
        x = x.transpose(1, 0, 2)
    return x[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)


def test_items_match_pixels_exactly(small_pack: Path) -> None:
    ds = ClipDataset(
        DatasetParams(small_pack, SampleParams(gt_size=8, random_reverse=True, interval_list=(1, 2)))
    )
    assert len(ds) == 12 + 7 + 9
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        spec = ds.spec(i)
        seen.add((spec.hflip, spec.vflip, spec.transpose))
        H, W = SHAPES[spec.clip]
        assert item["lq"].shape == (5, 3, 4, 4) and item["gt"].shape == (3, 8, 8)
        assert item["lq"].dtype == torch.float32 and item["frame"] == spec.center
        assert item["key"] == f"{item['clip']}/{spec.center}"
        for t, f in enumerate(spec.frames):
            exp = _expected(
                frame_pixels(spec.clip, f, H, W), spec.lq_crop, spec.hflip, spec.vflip, spec.transpose
            )
            assert np.array_equal(item["lq"][t].numpy(), exp)
        gt = frame_pixels(spec.clip + 100, spec.center, 2 * H, 2 * W)
        assert np.array_equal(
            item["gt"].numpy(), _expected(gt, spec.gt_crop, spec.hflip, spec.vflip, spec.transpose)
        )
    assert len(seen) == 8  # every flip/transpose combination shows up


def test_augment_order_is_hflip_vflip_transpose() -> None:
    x = np.arange(2 * 3 * 1, dtype=np.uint8).reshape(2, 3, 1)  # H=2, W=3
    got = augment(x, True, True, True)[:, :, 0]
    assert got.tolist() == [[5, 2], [4, 1], [3, 0]]
    rgb = to_tensor(np.array([[[1, 2, 3]]], np.uint8))
    assert rgb.flatten().tolist() == pytest.approx([3 / 255, 2 / 255, 1 / 255])


def test_full_frames_and_epochs(small_pack: Path) -> None:
    ds = ClipDataset(DatasetParams(small_pack, SampleParams(gt_size=None, use_hflip=False, use_rot=False)))
    item = ds[12]  # clip b, centre 0
    assert item["clip"] == "b" and item["lq"].shape == (5, 3, 16, 24) and item["gt"].shape == (3, 32, 48)
    ds2 = ClipDataset(DatasetParams(small_pack, SampleParams(gt_size=8)))
    ds2.set_epoch(3)
    assert torch.equal(ds2[5]["lq"], ds2[(3, 5)]["lq"])
    assert any(not torch.equal(ds2[(3, i)]["lq"], ds2[(4, i)]["lq"]) for i in range(10))


def _batches(ds: ClipDataset, workers: int, epoch: int) -> list[dict]:
    sampler = ClipSampler(len(ds), seed=1, with_epoch=True)
    sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=4,
        sampler=sampler,
        num_workers=workers,
        multiprocessing_context="fork" if workers else None,
    )
    return list(loader)


def test_same_batches_for_any_worker_count(small_pack: Path) -> None:
    ds = ClipDataset(DatasetParams(small_pack, SampleParams(gt_size=8, random_reverse=True)))
    ds.store.frame(0, 0, "lq")  # the parent holds an open transaction before forking
    single = _batches(ds, 0, epoch=2)
    forked = _batches(ds, 2, epoch=2)
    assert len(single) == len(forked) == 7
    for a, b in zip(single, forked, strict=True):
        assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"]) and a["key"] == b["key"]


def test_splits(small_pack: Path) -> None:
    val = ClipDataset(DatasetParams(small_pack, SampleParams(gt_size=8), split="val", val_clips=("b",)))
    train = ClipDataset(DatasetParams(small_pack, SampleParams(gt_size=8), split="train", val_clips=("b",)))
    assert len(val) == 7 and {val[i]["clip"] for i in range(len(val))} == {"b"}
    assert len(train) == 21 and "b" not in {train[i]["clip"] for i in range(len(train))}
    with pytest.raises(DatasetError, match="holds no clips"):
        ClipDataset(DatasetParams(small_pack, split="val"))
    with pytest.raises(ConfigError, match="split"):
        ClipDataset(DatasetParams(small_pack, split="test"))
    with pytest.raises(DatasetError, match="long enough"):
        ClipDataset(DatasetParams(small_pack, SampleParams(num_frame=21, boundary="inside", gt_size=8)))


def test_seed_layout_end_to_end_without_edits(seed_layout: Path, tmp_path: Path) -> None:
    pack(seed_layout, tmp_path / "p", progress=False)
    ds = ClipDataset(DatasetParams(tmp_path / "p", SampleParams(num_frame=5, gt_size=16, boundary="inside")))
    assert len(ds) == 3 * 26
    item = ds[len(ds) - 1]
    assert item["clip"] == "clip002" and item["frame"] == 27 and item["lq"].shape == (5, 3, 16, 16)
