"""Training on a `pack --degrade` pack, with and without on-the-fly degradation (data.degrade): it trains like a
pair pack, the training LQ is made from GT, and validation always reads the pack's deterministic LQ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from trainkit import tiny_config

from edvr_fast.data.dataset import ClipDataset
from edvr_fast.data.pack import pack
from edvr_fast.train import run
from edvr_fast.train.data import TrainBatches, resolve_source, val_samples
from edvr_fast.train.distributed import DistInfo

DEGRADE = {"enabled": True, "blur_prob": 0.8, "gaussian_prob": 0.8, "jpeg_prob": 0.5, "video_prob": 0.5}


@pytest.fixture(scope="module")
def hr_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import cv2

    root = tmp_path_factory.mktemp("hr")
    y, x = np.mgrid[0:36, 0:34].astype(np.float64)
    for c in range(3):
        (root / "hr" / f"c{c}").mkdir(parents=True)
        for i in range(6):
            img = np.stack([np.sin((x + 2 * i) / (4 + k + c)) * np.cos((y - i) / (6 - k)) for k in range(3)], -1)
            cv2.imwrite(str(root / "hr" / f"c{c}" / f"{i:04d}.png"), np.clip(img * 100 + 128, 0, 255).astype(np.uint8))
    pack(root / "hr", root / "pack", degrade="bicubic", scale=4, crop=32, progress=False, workers=2)
    return root / "pack"


def _cfg(pack_dir: Path, degrade: dict | None, kind: str):
    data = {"path": str(pack_dir), "val_clips": ["c2"]}
    if degrade is not None:
        data["degrade"] = degrade
    loader = {"kind": kind, "batch_size": 2, "num_workers": 0 if kind == "reference" else 1}
    return tiny_config(data=data, loader=loader, train={"iters": 3})


@pytest.mark.parametrize("kind, degrade", [("reference", None), ("fused", DEGRADE)])
def test_trains_on_a_degraded_pack(hr_pack: Path, tmp_path: Path, kind: str, degrade: dict | None) -> None:
    result = run(_cfg(hr_pack, degrade, kind), out=tmp_path / "run")
    assert result.iterations == 3 and result.checkpoint is not None and np.isfinite(result.val["psnr"])


def test_on_the_fly_lq_for_training_pack_lq_for_validation(hr_pack: Path) -> None:
    cfg = _cfg(hr_pack, DEGRADE, "reference")
    src = resolve_source(cfg, progress=False)
    val, idx = val_samples(cfg, src, DistInfo())
    assert val.plan.degrade is None
    plain = ClipDataset(val.params)  # the same split read straight from the pack
    for i in idx:
        assert torch.equal(val[i]["lq"], plain[i]["lq"])
    batches = TrainBatches(cfg, src, DistInfo(), notice=lambda _: None)
    assert batches.dataset.plan.degrade is not None
    undegraded = TrainBatches(_cfg(hr_pack, None, "reference"), src, DistInfo(), notice=lambda _: None)
    (lq, gt), (lq0, gt0) = next(iter(batches)), next(iter(undegraded))
    assert torch.equal(gt, gt0) and not torch.equal(lq, lq0) and lq.shape == lq0.shape
