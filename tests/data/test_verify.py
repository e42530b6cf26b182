"""Per-frame checksums (format_version 2): info --verify names each bad frame, a flipped bit in data.mdb is
caught, version-1 packs stay readable and say they carry no checksums, pack reads back before its rename."""

from __future__ import annotations

import json
from pathlib import Path

import lmdb
import numpy as np
import pytest
from clipkit import frame_pixels, write_pair

from edvr_fast.data import info
from edvr_fast.data import pack as pack_mod
from edvr_fast.data.meta import FORMAT_VERSION, crc_key, frame_key, load_meta
from edvr_fast.data.store import ClipStore
from edvr_fast.data.verify import verify_pack
from edvr_fast.errors import DatasetError


def _rewrite(path: Path, edits: dict[bytes, bytes | None]) -> None:
    env = lmdb.open(str(path), subdir=True)
    with env.begin(write=True) as txn:
        for k, v in edits.items():
            if v is None:
                txn.delete(k)
            else:
                txn.put(k, v)
    env.close()
    (path / "lock.mdb").unlink(missing_ok=True)


def test_fresh_pack_verifies(small_pack: Path, capsys: pytest.CaptureFixture) -> None:
    assert load_meta(small_pack).format_version == FORMAT_VERSION == 2
    report = verify_pack(small_pack)
    assert report.ok and report.has_checksums
    assert report.frames_checked == 2 * (12 + 7 + 9)
    assert info.main([str(small_pack), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "per-frame CRC-32s" in out and "56 frames checked (sizes and CRC-32s): OK" in out


def _file_offset_of_value(path: Path, key: bytes) -> int:
    """Where the live value of `key` lies in data.mdb: its address in LMDB's memory map (read from
    /proc/self/maps) minus the map's base. Stale copies of the bytes may sit in free pages elsewhere."""
    mdb = str((path / "data.mdb").resolve())
    env = lmdb.open(str(path), subdir=True, readonly=True, lock=False)
    try:
        with env.begin(buffers=True) as txn:
            addr = np.frombuffer(txn.get(key), np.uint8).ctypes.data
            for line in Path("/proc/self/maps").read_text().splitlines():
                fields = line.split()
                if fields[-1] == mdb:
                    lo, hi = (int(x, 16) for x in fields[0].split("-"))
                    if lo <= addr < hi:
                        return addr - lo + int(fields[2], 16)
    finally:
        env.close()
    raise AssertionError("data.mdb is not mapped")


def test_one_flipped_bit_in_data_mdb_is_named(small_pack: Path, capsys: pytest.CaptureFixture) -> None:
    key = frame_key("lq", 1, 3)  # clip 'b', frame 3
    at = _file_offset_of_value(small_pack, key) + 16 * 24 * 3 // 2
    mdb = small_pack / "data.mdb"
    data = bytearray(mdb.read_bytes())
    assert data[at - 576 : at + 576] == frame_pixels(1, 3, 16, 24).tobytes()
    data[at] ^= 0x10
    mdb.write_bytes(bytes(data))
    report = verify_pack(small_pack)
    assert [(b.clip, b.frame, b.kind) for b in report.bad] == [("b", 3, "lq")]
    assert "CRC-32" in report.bad[0].why
    assert info.main([str(small_pack), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "BAD clip 'b' frame 3 (lq): CRC-32" in out and "1 bad frame(s)" in out


def test_short_missing_and_checksum_key_problems(small_pack: Path) -> None:
    _rewrite(
        small_pack,
        {frame_key("gt", 2, 8): b"\x00" * 10, frame_key("lq", 0, 0): None, crc_key(1): b"\x01\x02"},
    )
    report = verify_pack(small_pack)
    got = {(b.clip, b.frame, b.kind): b.why for b in report.bad}
    assert "has 10 bytes, expected 40x40x3" in got[("c", 8, "gt")]
    assert got[("a", 0, "lq")] == "missing from the LMDB"
    assert report.problems == ["clip 'b': checksum key crc32/000001 is of the wrong length"]
    with pytest.raises(DatasetError, match=r"frame 8 \(gt\) of clip 'c' has 10 bytes"):
        ClipStore(small_pack).frame(2, 8, "gt")


def test_version_1_pack_is_readable_and_says_it_has_no_checksums(
    small_pack: Path, capsys: pytest.CaptureFixture
) -> None:
    meta_path = small_pack / "meta.json"
    d = json.loads(meta_path.read_text())
    d["format_version"] = 1
    meta_path.write_text(json.dumps(d))
    _rewrite(small_pack, {crc_key(i): None for i in range(3)})
    st = ClipStore(small_pack)
    assert np.array_equal(st.frame(1, 6, "lq"), frame_pixels(1, 6, 16, 24))
    report = verify_pack(small_pack)
    assert report.ok and not report.has_checksums
    assert info.main([str(small_pack), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "no checksums (format_version 1)" in out
    assert "carries no checksums; only presence and sizes were checked" in out


def test_unknown_version_is_refused(small_pack: Path) -> None:
    meta_path = small_pack / "meta.json"
    d = json.loads(meta_path.read_text())
    d["format_version"] = 3
    meta_path.write_text(json.dumps(d))
    with pytest.raises(DatasetError, match="format_version 3, this edvr_fast reads versions 1, 2"):
        load_meta(small_pack)


def test_pack_reads_back_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A value that changes between checksum and disk (a bad disk, a bug) fails the pack: no DST, no partial."""
    root = tmp_path / "src"
    write_pair(root, "a", 0, 4, 8, 8)
    real = pack_mod._put_batch

    def corrupting(env, batch):
        real(env, [(k, b"\x00" * len(v) if k == frame_key("gt", 0, 2) else v) for k, v in batch])

    monkeypatch.setattr(pack_mod, "_put_batch", corrupting)
    dst = tmp_path / "pack"
    with pytest.raises(DatasetError, match=r"does not read back .*clip 'a' frame 2 \(gt\): CRC-32"):
        pack_mod.pack(root, dst, progress=False, workers=1)
    assert not dst.exists() and not pack_mod.partial_path(dst).exists()
