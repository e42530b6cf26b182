"""The train / validation split of a user's pack: automatic (max(1, round(0.1 n)) clips held out, chosen by
data.split_seed) when none is configured, none for a single clip or with val.enabled=false; every run prints
the clips and writes them to clips.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edvr_fast.config import load_dict
from edvr_fast.data.pack import pack
from edvr_fast.errors import ConfigError
from edvr_fast.train.data import resolve_source

TINY_MODEL = {"num_feat": 8, "num_frame": 3, "deformable_groups": 1, "num_extract_block": 1,
              "num_reconstruct_block": 1, "scale": 1}


def make_pack(root: Path, clips: int, frames: int = 4, h: int = 16, w: int = 16) -> Path:
    """A deblurring-layout pack (input/ + gt/, frames named 000000.jpg as a camera writes them)."""
    rng = np.random.default_rng(clips)
    for c in range(clips):
        for side in ("input", "gt"):
            d = root / "clips" / side / f"clip_{c:02d}"
            d.mkdir(parents=True)
            for i in range(frames):
                cv2.imwrite(str(d / f"{i:06d}.jpg"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    pack(root / "clips", root / "pack.lmdb", progress=False)
    return root / "pack.lmdb"


def _cfg(path: Path, **val):
    return load_dict({"data": {"path": str(path), "sample": {"num_frame": 3, "gt_size": 8}}, "model": TINY_MODEL,
                      "val": val})


@pytest.mark.parametrize("clips, held_out", [(1, 0), (2, 1), (10, 1), (25, 2)])
def test_automatic_split(tmp_path, clips, held_out):
    src = resolve_source(_cfg(make_pack(tmp_path, clips, frames=3, h=8, w=8)), progress=False)
    assert len(src.val_names) == held_out and len(src.train_names) == clips - held_out
    assert set(src.val_names).isdisjoint(src.train_names)
    assert (src.no_val is None) == (held_out > 0)
    if clips == 1:
        assert "single clip" in src.no_val and src.train_names == ("clip_00",)
    else:
        assert "automatic" in src.how and "split_seed" in src.how


def test_split_seed_chooses_the_clips(tmp_path):
    path = make_pack(tmp_path, 10, frames=3, h=8, w=8)
    picks = set()
    for seed in range(6):
        cfg = _cfg(path)
        cfg.data.split_seed = seed
        picks.add(resolve_source(cfg, progress=False).val_names)
        assert resolve_source(cfg, progress=False).val_names in picks  # same seed, same clips
    assert len(picks) > 1


def test_explicit_no_validation(tmp_path):
    path = make_pack(tmp_path, 3, frames=3, h=8, w=8)
    src = resolve_source(_cfg(path, enabled=False), progress=False)
    assert src.no_val and src.val_names == () and len(src.train_names) == 3
    with pytest.raises(ConfigError, match="data.val_clips.*val.enabled is false"):
        load_dict({"data": {"val_clips": ["clip_00"]}, "val": {"enabled": False}})


def test_scale_mismatch_names_a_preset(tmp_path):
    path = make_pack(tmp_path, 2, frames=3, h=8, w=8)
    with pytest.raises(ConfigError, match="scale 1.*model.scale=4.*edvr-m-deblur"):
        resolve_source(load_dict({"data": {"path": str(path)}}), progress=False)


TRAIN = [sys.executable, "-m", "edvr_fast.train", "--no-progress", "--iters", "2", "--set", "checkpoint.every=2",
         "--set", "loader.batch_size=2", "--set", "loader.num_workers=0", "--set", "data.sample.num_frame=3",
         "--set", "data.sample.gt_size=8"] + [a for k, v in TINY_MODEL.items() for a in ("--set", f"model.{k}={v}")]


@pytest.mark.parametrize("clips, extra", [(1, []), (3, ["--no-val"])])
def test_training_without_validation(tmp_path, clips, extra):
    path = make_pack(tmp_path, clips, frames=4, h=16, w=16)
    out = tmp_path / "run"
    r = subprocess.run(TRAIN + ["--data", str(path), "--out", str(out), *extra], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "no validation" in r.stdout and "vs identity" not in r.stdout
    assert "samples:" not in r.stdout and "checkpoint:" in r.stdout
    assert "train clips" in r.stderr and "validation clips" not in r.stderr
    lists = json.loads((out / "clips.json").read_text())
    assert len(lists["train"]) == clips and lists["val"] == []
    assert not (out / "samples").exists()


def test_training_with_automatic_split_writes_the_lists(tmp_path):
    path = make_pack(tmp_path, 4, frames=4, h=16, w=16)
    out = tmp_path / "run"
    r = subprocess.run(TRAIN + ["--data", str(path), "--out", str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lists = json.loads((out / "clips.json").read_text())
    assert len(lists["val"]) == 1 and len(lists["train"]) == 3 and "automatic" in lists["split"]
    assert f"validation clips (1): {lists['val'][0]}" in r.stderr and "vs identity" in r.stdout
