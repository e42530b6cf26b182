"""The synthetic data set: deterministic, blurred and downsampled as asked, cached safely."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from edvr_fast.data.store import ClipStore
from edvr_fast.data.synthetic import GENERATOR_VERSION, SyntheticParams, ensure_dataset, render_clip


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


def test_a_sprite_covers_part_of_the_frame_not_all_of_it():
    """Sprites are objects moving over the panning background. (Generator 1 shifted them with a mirrored
    border, which tiled each sprite over the whole frame and hid the background and its motion.)"""
    for index in range(6):
        base = SyntheticParams(num_clips=6, num_frames=3, height=64, width=64, scale=1, blur=1, sprites=0, seed=2)
        plain = render_clip(base, index)[1]
        with_one = render_clip(dataclasses.replace(base, sprites=1), index)[1]  # same background and camera
        covered = [float((np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 0).mean())
                   for a, b in zip(plain, with_one)]
        assert covered[0] > 0, index  # the sprite starts with its centre inside the frame
        assert max(covered) < 0.4, (index, covered)  # at most (h / 2 + 3) x (w / 2 + 3) of the frame


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



def test_sensor_noise_touches_only_the_input():
    clean = SyntheticParams(num_clips=1, num_frames=3, height=32, width=32, scale=1, blur=3, seed=3)
    noisy = SyntheticParams(num_clips=1, num_frames=3, height=32, width=32, scale=1, blur=3, seed=3, noise=6.0)
    c_lq, c_gt = render_clip(clean, 0)
    n_lq, n_gt = render_clip(noisy, 0)
    assert all(np.array_equal(a, b) for a, b in zip(c_gt, n_gt))  # same scene, clean GT
    diff = np.stack(n_lq).astype(float) - np.stack(c_lq).astype(float)
    assert 4.5 < diff.std() < 7.5  # about the requested 6 levels (a little less where clipped)
    assert not np.array_equal(diff[0], diff[1])  # independent per frame
    with pytest.raises(ValueError, match="noise"):
        SyntheticParams(noise=-1)


def test_noise_free_sets_keep_their_cache_name():
    """Caches made before the noise knob existed stay valid: the key hashes the same fields as then."""
    p = SyntheticParams(num_clips=3, num_frames=5, height=32, width=32, scale=1, blur=3, seed=1)
    fields = {k: v for k, v in dataclasses.asdict(p).items() if k != "noise"}
    blob = json.dumps({"v": GENERATOR_VERSION, **fields}, sort_keys=True)
    assert p.key() == hashlib.sha256(blob.encode()).hexdigest()[:12]
    assert dataclasses.replace(p, noise=2.0).key() != p.key()
