"""Pack: LMDB + meta.json written atomically, map grown, errors leave nothing behind; info CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest
from clipkit import frame_pixels, write_clip, write_pair, write_video

from edvr_fast.data import info
from edvr_fast.data import pack as pack_mod
from edvr_fast.data.meta import FORMAT_VERSION, ID_KEY, frame_key, load_meta, stale_sources
from edvr_fast.data.pack import pack, partial_path
from edvr_fast.data.store import ClipStore
from edvr_fast.errors import DatasetError

REPO = Path(__file__).resolve().parents[2]


def _run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


def test_seed_layout_cli_pack_and_info(seed_layout: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    res = _run_cli("edvr_fast.data.pack", seed_layout, dst, "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "packed 3 clips, 90 frame pairs" in res.stdout
    meta = json.loads((dst / "meta.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["storage"] == "raw" and meta["dtype"] == "uint8" and meta["layout"] == "HWC"
    assert meta["channel_order"] == "BGR" and meta["scale"] == 1
    clip = meta["clips"][0]
    assert clip["name"] == "clip000" and clip["num_frames"] == 30
    assert clip["lq"] == {"h": 24, "w": 32, "c": 3} and clip["storage"] == "raw"
    assert clip["lq_source"]["files"][0] == "000000.jpg" and clip["lq_source"]["size_bytes"] > 0
    assert meta["pairing"]["mode"] == "subfolders" and meta["pairing"]["gt_root"].endswith("gt")
    with lmdb.open(str(dst), readonly=True, lock=False) as env, env.begin() as txn:
        assert txn.get(ID_KEY).decode() == meta["pack_id"]
        assert len(txn.get(frame_key("gt", 2, 29))) == 24 * 32 * 3
    assert not partial_path(dst).exists()
    out = _run_cli("edvr_fast.data.info", dst)
    assert out.returncode == 0 and "3 clips, 90 frames" in out.stdout and "up to date" in out.stdout


def test_cli_separate_roots_and_errors_without_traceback(tmp_path: Path) -> None:
    write_clip(tmp_path / "a" / "c", 0, 3, 8, 8)
    write_clip(tmp_path / "b" / "c", 0, 3, 16, 16)
    dst = tmp_path / "p"
    assert (
        pack_mod.main(
            ["--input", str(tmp_path / "a"), "--gt", str(tmp_path / "b"), str(dst), "--no-progress"]
        )
        == 0
    )
    assert load_meta(dst).scale == 2 and load_meta(dst).pairing["mode"] == "roots"
    res = _run_cli("edvr_fast.data.pack", "--input", tmp_path / "a", "--gt", tmp_path / "b", dst)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "already exists" in res.stderr and "--overwrite" in res.stderr
    res = _run_cli("edvr_fast.data.info", tmp_path / "nowhere")
    assert res.returncode != 0 and "Traceback" not in res.stderr and "meta.json" in res.stderr


def test_overwrite_replaces(small_pack: Path, tmp_path: Path) -> None:
    old_id = load_meta(small_pack).pack_id
    write_pair(tmp_path / "new", "z", 5, 4, 8, 8)
    with pytest.raises(DatasetError, match="already exists"):
        pack(tmp_path / "new", small_pack, progress=False)
    meta = pack(tmp_path / "new", small_pack, overwrite=True, progress=False)
    assert meta.pack_id != old_id and [c.name for c in load_meta(small_pack).clips] == ["z"]
    assert ClipStore(small_pack).clips[0].num_frames == 4


def test_map_grows_from_tiny_start(tmp_path: Path) -> None:
    write_pair(tmp_path / "s", "a", 0, 20, 32, 32, scale=2)
    dst = tmp_path / "p"
    pack(tmp_path / "s", dst, map_size=64 << 10, progress=False)
    assert (dst / "data.mdb").stat().st_size > 64 << 10
    store = ClipStore(dst)
    assert np.array_equal(store.frame(0, 19, "gt"), frame_pixels(100, 19, 64, 64))


@pytest.mark.parametrize("storage", ["png", "jpg"])
def test_compressed_storage(tmp_path: Path, storage: str) -> None:
    write_pair(tmp_path / "s", "a", 0, 3, 16, 24, scale=2)
    dst = tmp_path / "p"
    meta = pack(tmp_path / "s", dst, storage=storage, progress=False)
    assert meta.storage == storage and meta.clips[0].storage == storage
    store = ClipStore(dst)
    assert bytes(store.raw(0, 1, "lq"))[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
    img = store.frame(0, 1, "gt")
    assert img.shape == (32, 48, 3) and img.dtype == np.uint8
    diff = np.abs(img.astype(int) - frame_pixels(100, 1, 32, 48)).mean()
    assert diff == 0 if storage == "png" else diff < 12
    assert np.array_equal(store.crop(0, 1, "gt", 3, 5, 10, 7), img[3:13, 5:12])


def test_gray_pack(tmp_path: Path) -> None:
    write_pair(tmp_path / "s", "a", 0, 3, 8, 8, c=1)
    meta = pack(tmp_path / "s", tmp_path / "p", progress=False)
    assert meta.channel_order == "gray" and meta.clips[0].lq_shape == (8, 8, 1)
    assert ClipStore(tmp_path / "p").frame(0, 2, "lq").shape == (8, 8, 1)


def test_video_clip_packs(tmp_path: Path) -> None:
    write_video(tmp_path / "s" / "input" / "v.mp4", 0, 5, 16, 16)
    write_video(tmp_path / "s" / "gt" / "v.mp4", 1, 5, 32, 32)
    meta = pack(tmp_path / "s", tmp_path / "p", progress=False)
    assert meta.scale == 2 and meta.clips[0].num_frames == 5 and meta.clips[0].lq_source.kind == "video"
    assert ClipStore(tmp_path / "p").frame(0, 4, "gt").shape == (32, 32, 3)


def _assert_nothing_written(dst: Path) -> None:
    assert not dst.exists() and not partial_path(dst).exists()


def test_bad_frame_mid_clip_leaves_nothing(tmp_path: Path) -> None:
    write_pair(tmp_path / "s", "a", 0, 6, 24, 32, fmt="{:06d}.jpg")
    bad = tmp_path / "s" / "gt" / "a" / "000004.jpg"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    dst = tmp_path / "p"
    with pytest.raises(DatasetError, match="truncated") as err:
        pack(tmp_path / "s", dst, progress=False)
    assert str(bad) in str(err.value)
    _assert_nothing_written(dst)


def test_frame_size_differs_inside_clip(tmp_path: Path) -> None:
    write_pair(tmp_path / "s", "a", 0, 5, 8, 8)
    odd = tmp_path / "s" / "input" / "a" / "000003.png"
    write_clip(tmp_path / "tmp", 0, 1, 8, 10)
    os.replace(tmp_path / "tmp" / "000000.png", odd)
    dst = tmp_path / "p"
    res = _run_cli("edvr_fast.data.pack", tmp_path / "s", dst, "--no-progress")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert str(odd) in res.stderr and "10x8x3" in res.stderr and "same size" in res.stderr
    _assert_nothing_written(dst)


@pytest.mark.parametrize("case", ["no_gt", "count", "scale", "empty", "gray_colour"])
def test_scan_errors_write_nothing(tmp_path: Path, case: str) -> None:
    s = tmp_path / "s"
    write_pair(s, "a", 0, 3, 8, 8)
    if case == "no_gt":
        write_clip(s / "input" / "b", 0, 3, 8, 8)
    elif case == "count":
        write_clip(s / "gt" / "a", 0, 4, 8, 8)
    elif case == "scale":
        write_pair(s, "b", 0, 3, 8, 8, scale=3)
    elif case == "empty":
        s = tmp_path / "empty"
        (s / "input").mkdir(parents=True)
        (s / "gt").mkdir()
    else:
        write_pair(s, "b", 0, 3, 8, 8, c=1)
    dst = tmp_path / "p"
    with pytest.raises(DatasetError) as err:
        pack(s, dst, progress=False)
    assert str(s) in str(err.value)
    _assert_nothing_written(dst)


_KILL_SCRIPT = """
import sys, time
from pathlib import Path
import edvr_fast.data.pack as p
real = p.read_image
def slow(path):
    Path(sys.argv[3]).touch()
    time.sleep(0.05)
    return real(path)
p.read_image = slow
p.pack(sys.argv[1], sys.argv[2], workers=1, progress=False)
"""


def test_kill_during_pack_leaves_no_dst_and_rerun_is_clean(tmp_path: Path) -> None:
    write_pair(tmp_path / "s", "a", 0, 30, 8, 8)
    dst, started = tmp_path / "p", tmp_path / "started"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, tmp_path / "s", dst, started], env=env)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not dst.exists()
    assert partial_path(dst).exists() and not (partial_path(dst) / "meta.json").exists()
    with pytest.raises(DatasetError):
        ClipStore(partial_path(dst))
    pack(tmp_path / "s", dst, progress=False)  # starts clean over the leftover .partial
    assert not partial_path(dst).exists() and ClipStore(dst).clips[0].num_frames == 30


def test_meta_lmdb_mismatch_detected(tmp_path: Path) -> None:
    write_pair(tmp_path / "s", "a", 0, 3, 8, 8)
    pack(tmp_path / "s", tmp_path / "p1", progress=False)
    pack(tmp_path / "s", tmp_path / "p2", progress=False)
    os.replace(tmp_path / "p2" / "meta.json", tmp_path / "p1" / "meta.json")
    with pytest.raises(DatasetError, match="different packs") as err:
        ClipStore(tmp_path / "p1")
    assert str(tmp_path / "p1") in str(err.value)


def test_version_check(small_pack: Path) -> None:
    meta_path = small_pack / "meta.json"
    d = json.loads(meta_path.read_text())
    d["format_version"] = 99
    meta_path.write_text(json.dumps(d))
    with pytest.raises(DatasetError, match="format_version 99") as err:
        load_meta(small_pack)
    assert str(meta_path) in str(err.value)


def test_stale_pack_detected(small_pack: Path) -> None:
    meta = load_meta(small_pack)
    assert stale_sources(meta) == []
    src = Path(meta.clips[1].gt_source.path) / meta.clips[1].gt_source.files[0]
    time.sleep(0.01)
    write_clip(src.parent, 0, 1, 32, 48)
    reasons = stale_sources(meta)
    assert reasons and "'b'" in reasons[0]
    assert "STALE" in info.describe(small_pack)


def test_overwrite_never_deletes_non_pack(tmp_path: Path) -> None:
    write_pair(tmp_path / "s", "a", 0, 2, 8, 8)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(DatasetError, match="not a pack") as err:
        pack(tmp_path / "s", precious, overwrite=True, progress=False)
    assert str(precious) in str(err.value) and (precious / "thesis.txt").exists()
    (tmp_path / "empty").mkdir()
    pack(tmp_path / "s", tmp_path / "empty", overwrite=True, progress=False)
    assert (tmp_path / "empty" / "meta.json").exists()


def test_importing_package_loads_no_lmdb_or_cv2() -> None:
    code = "import sys, edvr_fast, edvr_fast.data; assert not {'lmdb', 'cv2'} & set(sys.modules)"
    res = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True
    )
    assert res.returncode == 0, res.stderr
