"""The synthetic data set: deterministic, blurred and downsampled as asked, cached safely."""

from __future__ import annotations

import json

import numpy as np

from edvr_fast.data.store import ClipStore
from edvr_fast.data.synthetic import SyntheticParams, ensure_dataset, render_clip


def test_render_is_deterministic_blurred_and_downsampled():
    p = SyntheticParams(num_clips=2, num_frames=4, height=32, width=48, scale=2, blur=5, seed=7)
    lq, gt = render_clip(p, 1)
    lq2, gt2 = render_clip(p, 1)
    assert all(np.array_equal(a, b) for a, b in zip(lq + gt, lq2 + gt2))
    assert lq[0].shape == (16, 24, 3) and gt[0].shape == (32, 48, 3) and lq[0].dtype == np.uint8
    assert not np.array_equal(render_clip(p, 0)[1][0], gt[0])  # clips differ
    assert not np.array_equal(gt[0], gt[1])  # content moves
    # Blur removes detail: the sharp GT has more gradient energy than the blurred (same-size) input.
    sharp = SyntheticParams(num_clips=1, num_frames=2, height=32, width=32, scale=1, blur=1, seed=7)
    blurry = SyntheticParams(num_clips=1, num_frames=2, height=32, width=32, scale=1, blur=9, max_speed=6, seed=7)
    b_lq, b_gt = render_clip(blurry, 0)
    s_lq, s_gt = render_clip(sharp, 0)
    assert np.array_equal(s_lq[0], s_gt[0])

    def grad(x):
        return np.abs(np.diff(x.astype(float), axis=1)).mean()

    assert grad(b_lq[0]) < 0.9 * grad(b_gt[0])


def test_cache_recovers_from_half_written_attempt(tmp_path):
    p = SyntheticParams(num_clips=2, num_frames=3, height=16, width=16, scale=1, blur=2)
    folder = tmp_path / p.key()
    (folder / "frames.partial" / "input").mkdir(parents=True)  # a killed render
    (folder / "pack").mkdir()  # a pack folder without meta.json is not finished
    pack, frames = ensure_dataset(p, tmp_path, progress=False)
    store = ClipStore(pack)
    assert [c.name for c in store.clips] == ["scene_000", "scene_001"] and store.clips[0].num_frames == 3
    assert not (folder / "frames.partial").exists()
    assert json.loads((folder / "params.json").read_text())["blur"] == 2
    mtime = (pack / "meta.json").stat().st_mtime_ns
    assert ensure_dataset(p, tmp_path, progress=False) == (pack, frames)  # reused, not rebuilt
    assert (pack / "meta.json").stat().st_mtime_ns == mtime
