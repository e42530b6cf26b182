"""ClipStore: exact frames, zero-copy views, row-only crops, lazy per-process opening across fork."""

from __future__ import annotations

import multiprocessing as mp
import pickle
from pathlib import Path

import numpy as np
import pytest
from clipkit import frame_pixels

from edvr_fast.data import store as store_mod
from edvr_fast.data.store import ClipStore
from edvr_fast.errors import DatasetError, InputError


def test_frames_exact_and_zero_copy(small_pack: Path) -> None:
    st = ClipStore(small_pack)
    assert [(c.name, c.num_frames, c.lq_shape, c.gt_shape) for c in st.clips] == [
        ("a", 12, (16, 20, 3), (32, 40, 3)),
        ("b", 7, (16, 24, 3), (32, 48, 3)),
        ("c", 9, (20, 20, 3), (40, 40, 3)),
    ]
    f = st.frame(1, 6, "lq")
    assert np.array_equal(f, frame_pixels(1, 6, 16, 24))
    assert np.array_equal(st.frame(2, 0, "gt"), frame_pixels(102, 0, 40, 40))
    assert not f.flags.writeable and not f.flags.owndata and f.flags.c_contiguous
    raw = st.raw(1, 6, "lq")
    assert isinstance(raw, memoryview) and len(raw) == 16 * 24 * 3
    assert np.shares_memory(np.frombuffer(raw, np.uint8), st.frame(1, 6, "lq"))


def test_crop_is_a_view_of_only_needed_rows(small_pack: Path) -> None:
    st = ClipStore(small_pack)
    c = st.crop(0, 3, "gt", 5, 7, 10, 12)
    assert np.array_equal(c, frame_pixels(100, 3, 32, 40)[5:15, 7:19])
    assert not c.flags.owndata
    base = np.frombuffer(st.raw(0, 3, "gt"), np.uint8)
    start = c.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    assert start == (5 * 40 + 7) * 3
    with pytest.raises(InputError, match="outside"):
        st.crop(0, 3, "gt", 30, 0, 5, 5)
    with pytest.raises(InputError):
        st.frame(0, 0, "hq")
    with pytest.raises(IndexError):
        st.frame(0, 12, "lq")


def _child_read(store: ClipStore, q) -> None:
    f = store.frame(2, 8, "lq")
    q.put((store._pid == mp.current_process().pid, int(f.sum())))


def test_fork_reopens_per_process_and_pickles(small_pack: Path) -> None:
    st = ClipStore(small_pack)
    parent_sum = int(st.frame(2, 8, "lq").sum())
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_read, args=(st, q))
    p.start()
    own_pid, child_sum = q.get(timeout=30)
    p.join(30)
    assert own_pid and child_sum == parent_sum
    clone = pickle.loads(pickle.dumps(st))
    assert clone._txn is None and int(clone.frame(2, 8, "lq").sum()) == parent_sum


def test_one_environment_per_process(small_pack: Path) -> None:
    a, b = ClipStore(small_pack), ClipStore(small_pack)
    a.frame(0, 0, "lq"), b.frame(0, 0, "lq")
    assert store_mod._ENVS[str(small_pack)][0] == mp.current_process().pid
    a.close()
    assert b.frame(0, 1, "lq").shape == (16, 20, 3)


def test_views_stay_valid_while_open(small_pack: Path) -> None:
    st = ClipStore(small_pack)
    views = [(c, f, st.frame(c, f, "lq")) for c in range(3) for f in range(st.clips[c].num_frames)]
    raws = [bytes(st.raw(0, f, "gt")) for f in range(3)]
    for c, f, v in views:  # every earlier view still shows its own frame
        assert np.array_equal(v, frame_pixels(c, f, *st.clips[c].lq_shape[:2]))
    assert raws[0] != raws[1]


def test_truncated_lmdb_is_an_error_not_a_crash(small_pack: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_pack, copy)
    with open(copy / "data.mdb", "r+b") as f:
        f.truncate(8192)
    with pytest.raises(DatasetError, match="truncated") as exc:
        ClipStore(copy)
    assert str(copy) in str(exc.value)
