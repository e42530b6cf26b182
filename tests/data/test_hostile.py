"""Hostile packs and trees: meta.json with unsafe clip names or absurd sizes, short values, encoded frames
whose header claims another size (decompression bombs), symlink loops in a dataset tree."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
from clipkit import write_clip, write_pair

from edvr_fast.data.headers import jpeg_size, png_size
from edvr_fast.data.meta import frame_key
from edvr_fast.data.scan import scan
from edvr_fast.data.store import ClipStore
from edvr_fast.errors import DatasetError


def _edit_meta(pack: Path, fn) -> None:
    p = pack / "meta.json"
    d = json.loads(p.read_text())
    fn(d)
    p.write_text(json.dumps(d))


def _put(pack: Path, key: bytes, value: bytes) -> None:
    env = lmdb.open(str(pack), subdir=True)
    with env.begin(write=True) as txn:
        txn.put(key, value)
    env.close()
    (pack / "lock.mdb").unlink(missing_ok=True)


@pytest.mark.parametrize(
    "name, why",
    [
        ("../escape", "'..'"),
        ("a/../../b", "'..'"),
        ("/etc/passwd", "starts with '/'"),
        ("a\\b", "backslash"),
        ("a//b", "empty"),
        ("", "empty"),
        (7, "not a string"),
    ],
)
def test_unsafe_clip_names_are_refused(small_pack: Path, name: object, why: str) -> None:
    _edit_meta(small_pack, lambda d: d["clips"][1].__setitem__("name", name))
    with pytest.raises(DatasetError, match=f"meta.json is invalid: clip 1 name .*{why}"):
        ClipStore(small_pack)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c["lq"].__setitem__("h", -16), "lq size -16x20x3"),
        (lambda c: c["gt"].__setitem__("w", 1 << 40), "gt size 32x1099511627776x3"),
        (lambda c: c["lq"].__setitem__("c", 4), "lq size 16x20x4"),
        (lambda c: c.__setitem__("num_frames", 0), "num_frames 0"),
        (lambda c: c.__setitem__("num_frames", 10**12), "num_frames 1000000000000"),
        (lambda c: c["lq"].__setitem__("h", "many"), "malformed"),
    ],
)
def test_absurd_sizes_are_refused(small_pack: Path, edit, match: str) -> None:
    _edit_meta(small_pack, lambda d: edit(d["clips"][0]))
    with pytest.raises(DatasetError, match=match):
        ClipStore(small_pack)


def test_nested_clip_names_stay_allowed(tmp_path: Path) -> None:
    from edvr_fast.data.pack import pack

    root = tmp_path / "src"
    write_pair(root, "set1/clip", 0, 3, 8, 8)
    dst = tmp_path / "pack"
    pack(root, dst, progress=False, workers=1)
    assert [c.name for c in ClipStore(dst).clips] == ["set1/clip"]


def test_short_raw_value_is_a_clear_error_in_both_loaders(small_pack: Path) -> None:
    _put(small_pack, frame_key("lq", 0, 4), b"\x01" * 100)
    st = ClipStore(small_pack)
    with pytest.raises(DatasetError, match=r"frame 4 \(lq\) of clip 'a' has 100 bytes, expected 16x20x3"):
        st.frame(0, 4, "lq")
    with pytest.raises(DatasetError, match="has 100 bytes"):
        st.crop(0, 4, "lq", 0, 0, 4, 4)
    from edvr_fast.data.dataset import DatasetParams
    from edvr_fast.data.loader import FusedClipLoader
    from edvr_fast.data.sampler import SampleParams

    try:
        from edvr_fast import _C  # noqa: F401
    except ImportError:
        pytest.skip("the fused loader needs the compiled extension")
    params = DatasetParams(small_pack, SampleParams(gt_size=8, num_frame=5, seed=0), split="all")
    with FusedClipLoader(params, 4, prefetch=1, shuffle=False) as loader:
        with pytest.raises(DatasetError, match="100 bytes"):
            list(loader)


def _png_with_header(h: int, w: int) -> bytes:
    """A valid 8x8 PNG whose IHDR (with a correct CRC) claims h x w."""
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg_with_header(h: int, w: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def test_header_parsers() -> None:
    assert png_size(_png_with_header(30000, 20000)) == (30000, 20000, 3)
    assert jpeg_size(_jpeg_with_header(40000, 50000)) == (40000, 50000, 3)
    assert png_size(b"\x89PNG\r\n\x1a\nshort") is None and jpeg_size(b"\xff\xd8\xff") is None


@pytest.mark.parametrize("storage", ["png", "jpg"])
def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path, storage: str) -> None:
    """A stored frame whose header claims 30000x30000 (2.7 GB decoded) is refused naming clip and frame;
    the store never hands it to cv2 (which would allocate what the header says)."""
    from edvr_fast.data.pack import pack

    root = tmp_path / "src"
    write_pair(root, "a", 0, 6, 16, 16)
    dst = tmp_path / "pack"
    pack(root, dst, storage=storage, progress=False, workers=1)
    bomb = _png_with_header(30000, 30000) if storage == "png" else _jpeg_with_header(30000, 30000)
    _put(dst, frame_key("gt", 0, 2), bomb)
    st = ClipStore(dst)
    with pytest.raises(DatasetError, match=r"frame 2 \(gt\) of clip 'a' header claims 30000x30000x3, meta"):
        st.frame(0, 2, "gt")
    try:
        from edvr_fast import _C

        _C.decode_crop  # noqa: B018
    except (ImportError, AttributeError):
        return
    codec = "png" if storage == "png" else "jpeg"
    if codec not in _C.loader_codecs:
        return
    with pytest.raises(ValueError, match="decodes to 30000x30000x3, expected 16x16x3"):
        _C.decode_crop(bomb, codec, 16, 16, 3, 0, 0, 8, 8)


def test_symlink_loops_do_not_hang_the_scanner(tmp_path: Path) -> None:
    root = tmp_path / "src"
    write_pair(root, "a", 0, 3, 8, 8)
    write_clip(tmp_path / "elsewhere" / "b", 1, 3, 8, 8)
    write_clip(tmp_path / "elsewhere_gt" / "b", 101, 3, 8, 8)
    os.symlink(root / "input", root / "input" / "a" / "loop")  # a folder linking to its ancestor
    os.symlink(root / "gt", root / "gt" / "loop2")
    os.symlink(tmp_path / "elsewhere" / "b", root / "input" / "b")  # linked clips are followed
    os.symlink(tmp_path / "elsewhere_gt" / "b", root / "gt" / "b")
    res = scan(root)
    assert [c.name for c in res.clips] == ["a", "b"]
    assert res.skipped["linked_twice"] == 2
