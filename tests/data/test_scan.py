"""Scan: layouts found without code edits, and every bad input named with its file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from clipkit import write_clip, write_pair, write_video

from edvr_fast.data.frames import natural_key, read_clip_frames, read_image
from edvr_fast.data.scan import find_pair, scan, scan_frames
from edvr_fast.errors import DatasetError


def test_seed_layout(seed_layout: Path) -> None:
    res = scan(seed_layout)
    assert [c.name for c in res.clips] == ["clip000", "clip001", "clip002"]
    assert all(c.num_frames == 30 and c.lq_shape == (24, 32, 3) and c.ext == ".jpg" for c in res.clips)
    assert res.scale == 1
    assert res.clips[0].lq_frames[0].name == "000000.jpg"
    assert res.clips[0].lq_frames[-1].name == "000029.jpg"


def test_natural_sort_prefixed_names(tmp_path: Path) -> None:
    write_pair(tmp_path, "x", 0, 12, 8, 8, fmt="frame_{}.png")
    res = scan(tmp_path)
    names = [p.name for p in res.clips[0].lq_frames]
    assert names.index("frame_7.png") < names.index("frame_10.png")
    assert names == [f"frame_{i}.png" for i in range(12)]
    assert sorted(["a10", "a9", "b1", "a100"], key=natural_key) == ["a9", "a10", "a100", "b1"]


def test_eight_digit_names_and_separate_roots(tmp_path: Path) -> None:
    write_clip(tmp_path / "in" / "s1", 0, 5, 8, 8, fmt="{:08d}.png")
    write_clip(tmp_path / "target" / "s1", 1, 5, 8, 8, fmt="{:08d}.png")
    res = scan(tmp_path / "in", tmp_path / "target")
    assert res.clips[0].lq_frames[0].name == "00000000.png" and res.clips[0].num_frames == 5


@pytest.mark.parametrize("pair", [("blur", "sharp"), ("lq", "gt"), ("LQ", "GT"), ("input", "gt")])
def test_pair_detection(tmp_path: Path, pair: tuple[str, str]) -> None:
    write_pair(tmp_path, "c", 0, 3, 8, 8, lq_dir=pair[0], gt_dir=pair[1])
    lq, gt = find_pair(tmp_path)
    assert (lq.name, gt.name) == pair


def test_no_pair_names_what_it_looked_for(tmp_path: Path) -> None:
    write_clip(tmp_path / "frames" / "c", 0, 3, 8, 8)
    with pytest.raises(DatasetError, match="blur/\\+sharp/") as err:
        scan(tmp_path)
    assert str(tmp_path) in str(err.value) and "--input" in str(err.value)


def test_variable_frames_sizes_and_sr_scale(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 5, 8, 12, scale=4)
    write_pair(tmp_path, "b", 1, 9, 10, 6, scale=4)
    res = scan(tmp_path)
    a, b = res.clips
    assert (a.num_frames, a.lq_shape, a.gt_shape) == (5, (8, 12, 3), (32, 48, 3))
    assert (b.num_frames, b.lq_shape, b.gt_shape) == (9, (10, 6, 3), (40, 24, 3))
    assert res.scale == 4


def test_video_clip_paired_with_frames(tmp_path: Path) -> None:
    write_video(tmp_path / "input" / "v.avi", 0, 6, 16, 24)
    write_clip(tmp_path / "gt" / "v", 1, 6, 16, 24)
    res = scan(tmp_path)
    clip = res.clips[0]
    assert clip.lq.kind == "video" and clip.gt.kind == "frames" and clip.num_frames == 6
    assert len(list(read_clip_frames(tmp_path / "input" / "v.avi"))) == 6


def test_hidden_and_non_image_files_skipped_and_counted(tmp_path: Path) -> None:
    write_pair(tmp_path, "c", 0, 4, 8, 8)
    (tmp_path / "input" / "c" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "input" / "c" / "notes.txt").write_text("hi")
    (tmp_path / "gt" / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "gt" / ".hidden").mkdir()
    res = scan(tmp_path)
    assert res.clips[0].num_frames == 4
    assert res.skipped == {"hidden": 2, "non_image": 2}
    assert "2 hidden" in res.summary() and "2 non-image" in res.summary()


def test_scan_frames_without_gt_for_inference(tmp_path: Path) -> None:
    write_clip(tmp_path / "a", 0, 3, 8, 8)
    write_video(tmp_path / "b.mp4", 1, 4, 8, 8)
    res = scan_frames(tmp_path)
    assert [(c.name, c.num_frames, c.gt) for c in res.clips] == [("a", 3, None), ("b", 4, None)]
    single = scan_frames(tmp_path / "a")
    assert single.clips[0].name == "a"
    got = list(read_clip_frames(tmp_path / "a"))
    assert np.array_equal(got[2], read_image(tmp_path / "a" / "000002.png"))


def _err(root: Path, gt: Path | None = None) -> str:
    with pytest.raises(DatasetError) as err:
        scan(root, gt)
    return str(err.value)


def test_input_without_gt(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 3, 8, 8)
    write_clip(tmp_path / "input" / "orphan", 0, 3, 8, 8)
    msg = _err(tmp_path)
    assert "orphan" in msg and "no GT" in msg and str(tmp_path / "input" / "orphan") in msg


def test_gt_without_input(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 3, 8, 8)
    write_clip(tmp_path / "gt" / "lonely", 0, 3, 8, 8)
    msg = _err(tmp_path)
    assert "no input" in msg and str(tmp_path / "gt" / "lonely") in msg


def test_frame_count_mismatch(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 4, 8, 8)
    (tmp_path / "gt" / "a" / "000003.png").unlink()
    msg = _err(tmp_path)
    assert "4 input frames but 3 GT frames" in msg and str(tmp_path / "input" / "a") in msg


def test_unreadable_image(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 3, 8, 8)
    bad = tmp_path / "input" / "a" / "000000.png"
    bad.write_bytes(b"not an image at all")
    msg = _err(tmp_path)
    assert str(bad) in msg


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_truncated_image(tmp_path: Path, ext: str) -> None:
    write_pair(tmp_path, "a", 0, 3, 24, 32, fmt="{:06d}." + ext)
    bad = tmp_path / "gt" / "a" / f"000000.{ext}"
    bad.write_bytes(bad.read_bytes()[:-200])
    msg = _err(tmp_path)
    assert "truncated" in msg and str(bad) in msg


def test_jpeg_with_trailing_bytes_is_fine(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 2, 24, 32, fmt="{:06d}.jpg")
    f = tmp_path / "input" / "a" / "000000.jpg"
    f.write_bytes(f.read_bytes() + b"\x00" * 16 + b"trailer")
    assert read_image(f).shape == (24, 32, 3)


def test_non_integer_scale(tmp_path: Path) -> None:
    write_clip(tmp_path / "input" / "a", 0, 2, 8, 8)
    write_clip(tmp_path / "gt" / "a", 0, 2, 12, 12)
    msg = _err(tmp_path)
    assert "integer multiple" in msg and str(tmp_path / "gt" / "a" / "000000.png") in msg


def test_inconsistent_scale(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 2, 8, 8, scale=2)
    write_pair(tmp_path, "b", 1, 2, 8, 8, scale=4)
    msg = _err(tmp_path)
    assert "x4" in msg and "x2" in msg and str(tmp_path / "gt" / "b") in msg


def test_empty_roots(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "gt").mkdir()
    msg = _err(tmp_path)
    assert "no clips found" in msg and str(tmp_path / "input") in msg
    with pytest.raises(DatasetError, match="does not exist"):
        scan(tmp_path / "nope")


def test_gray_and_colour_mixed(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 2, 8, 8)
    write_pair(tmp_path, "b", 1, 2, 8, 8, c=1)
    msg = _err(tmp_path)
    assert "gray and colour mixed" in msg and str(tmp_path / "input" / "b" / "000000.png") in msg


def test_gray_dataset_is_fine(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 2, 8, 8, c=1)
    assert scan(tmp_path).clips[0].lq_shape == (8, 8, 1)


def test_nested_clip_names(tmp_path: Path) -> None:
    write_pair(tmp_path, "train/s1", 0, 2, 8, 8)
    write_pair(tmp_path, "train/s2", 1, 2, 8, 8)
    assert [c.name for c in scan(tmp_path).clips] == ["train/s1", "train/s2"]


def test_16_bit_image_rejected(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", 0, 2, 8, 8)
    bad = tmp_path / "input" / "a" / "000000.png"
    cv2.imwrite(str(bad), np.zeros((8, 8, 3), np.uint16))
    assert "8-bit" in _err(tmp_path)
