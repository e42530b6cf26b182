"""A pack that runs out of disk (a small tmpfs): a clear DatasetError, the previous pack untouched, no partial."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from clipkit import write_pair

from edvr_fast.data import pack as pack_mod
from edvr_fast.data.store import ClipStore
from edvr_fast.data.verify import verify_pack
from edvr_fast.errors import DatasetError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from diskfull import small_tmpfs  # noqa: E402


def test_pack_into_a_full_disk(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    write_pair(small, "a", 0, 2, 8, 8)
    write_pair(big, "a", 0, 20, 96, 96)  # ~1.1 MB of raw frames: does not fit in 512 KiB
    with small_tmpfs(tmp_path / "disk", 512) as disk:
        dst = disk / "pack"
        pack_mod.pack(small, dst, progress=False, workers=1)
        before = ClipStore(dst).meta.pack_id
        with pytest.raises(DatasetError, match="disk is full: the pack did not fit .*previous pack there is untouched"):
            pack_mod.pack(big, dst, overwrite=True, progress=False, workers=1)
        assert sorted(p.name for p in disk.iterdir()) == ["pack"]  # no pack.partial left
        assert verify_pack(dst).ok and ClipStore(dst).meta.pack_id == before
        assert pack_mod.main([str(big), str(disk / "other"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "disk is full" in err and "Traceback" not in err
        assert sorted(p.name for p in disk.iterdir()) == ["pack"]
