"""FusedClipLoader: batches equal ClipDataset + collate (raw, png, gray, every boundary, DDP shards, partial
batches), half-precision casts, resume, held batches never overwritten, flat memory, fork, bad packs."""

from __future__ import annotations

import multiprocessing as mp
import shutil
from pathlib import Path

import lmdb
import pytest
import torch
from loaderkit import reference_batches

from edvr_fast.data.dataset import DatasetParams
from edvr_fast.data.loader import FusedClipLoader
from edvr_fast.data.meta import frame_key
from edvr_fast.data.sampler import BOUNDARIES, SampleParams
from edvr_fast.errors import ConfigError, DatasetError, InputError


def _params(path: Path, **kw) -> DatasetParams:
    base = dict(gt_size=8, random_reverse=True, interval_list=(1, 2), seed=3)
    base.update(kw)
    return DatasetParams(path, SampleParams(**base), split="all")


def _assert_same(got: list, want: list) -> None:
    assert len(got) == len(want) > 0
    for (lq, gt), (rlq, rgt) in zip(got, want, strict=True):
        assert lq.shape == rlq.shape and gt.shape == rgt.shape and lq.dtype == rlq.dtype
        assert torch.equal(lq, rlq) and torch.equal(gt, rgt)


@pytest.mark.parametrize("pack_name", ["raw_pack", "png_pack", "gray_pack"])
def test_batches_equal_reference(pack_name: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(pack_name)
    params = _params(path)
    with FusedClipLoader(params, 4, prefetch=2) as loader:
        assert len(loader) == (12 + 3 + 9) // 4
        for epoch in (0, 5):
            loader.set_epoch(epoch)
            got = list(loader)  # the caller keeps every batch: buffers must not be reused under it
            _assert_same(got, reference_batches(params, 4, epoch))
        assert len(loader._ring) <= loader.prefetch + 2


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_every_boundary_policy(raw_pack: Path, boundary: str) -> None:
    params = _params(raw_pack, boundary=boundary, num_frame=7)
    with FusedClipLoader(params, 3, drop_last=False, shuffle=False) as loader:
        got = [(lq.clone(), gt.clone()) for lq, gt in loader]
    want = reference_batches(params, 3, 0, drop_last=False, shuffle=False)
    _assert_same(got, want)
    assert got[-1][0].shape[0] == len(loader.plan) % 3 or got[-1][0].shape[0] == 3


def test_full_frames_and_no_flips(raw_pack: Path) -> None:
    params = DatasetParams(raw_pack, SampleParams(gt_size=None, use_rot=False), split="val", val_clips=("a",))
    with FusedClipLoader(params, 2) as loader:
        got = list(loader)
    assert got[0][0].shape == (2, 5, 3, 16, 20) and got[0][1].shape == (2, 3, 32, 40)
    _assert_same(got, reference_batches(params, 2, 0))
    with pytest.raises(ConfigError, match="one size"):
        FusedClipLoader(DatasetParams(raw_pack, SampleParams(gt_size=None, use_rot=False), split="all"), 2)
    with pytest.raises(ConfigError, match="non-square"):
        FusedClipLoader(DatasetParams(raw_pack, SampleParams(gt_size=None), split="val", val_clips=("a",)), 2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_output_is_the_float32_output_cast(raw_pack: Path, dtype: torch.dtype) -> None:
    params = _params(raw_pack)
    with FusedClipLoader(params, 4) as f32, FusedClipLoader(params, 4, out_dtype=dtype) as half:
        for (lq, gt), (hlq, hgt) in zip(f32, half, strict=True):
            assert hlq.dtype == dtype and hgt.dtype == dtype
            assert torch.equal(hlq.view(torch.int16), lq.to(dtype).view(torch.int16))
            assert torch.equal(hgt.view(torch.int16), gt.to(dtype).view(torch.int16))
    with pytest.raises(InputError, match="out_dtype"):
        FusedClipLoader(params, 4, out_dtype=torch.float64)


def test_ddp_shards_follow_the_sampler(raw_pack: Path) -> None:
    params = _params(raw_pack)
    shards = []
    for rank in (0, 1):
        with FusedClipLoader(params, 3, rank=rank, world_size=2) as loader:
            loader.set_epoch(2)
            got = [(lq.clone(), gt.clone()) for lq, gt in loader]
        _assert_same(got, reference_batches(params, 3, 2, rank=rank, world_size=2))
        shards.append(got)
    assert not torch.equal(shards[0][0][0], shards[1][0][0])


def test_state_round_trip_resumes_the_same_stream(raw_pack: Path) -> None:
    params = _params(raw_pack)
    with FusedClipLoader(params, 2, prefetch=3) as loader:
        loader.set_epoch(1)
        it = iter(loader)
        head = [next(it) for _ in range(3)]  # batches in flight beyond these must not count as consumed
        state = loader.state_dict()
        rest = [(lq.clone(), gt.clone()) for lq, gt in it]
    assert state["sampler"]["position"] == 6 and state["sampler"]["epoch"] == 1
    with FusedClipLoader(params, 2) as resumed:
        resumed.load_state_dict(state)
        again = list(resumed)
        _assert_same(again, rest)
        assert len(head) + len(again) == len(resumed)
        resumed.set_epoch(2)  # a new epoch starts from its beginning again
        _assert_same(list(resumed), reference_batches(params, 2, 2))


def test_memory_stays_flat_and_buffers_are_reused(raw_pack: Path) -> None:
    def rss_kib() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

    params = _params(raw_pack, gt_size=16)
    with FusedClipLoader(params, 2, prefetch=2) as loader:
        ptrs, seen, start = set(), 0, None
        for epoch in range(400):  # 12 batches per epoch: 4800 batches
            loader.set_epoch(epoch)
            for lq, _gt in loader:
                ptrs.add(lq.data_ptr())
                seen += 1
            if epoch == 40:
                start = rss_kib()
        grown = rss_kib() - start
    assert seen == 400 * 12
    assert len(ptrs) <= 4  # the ring is reused, never reallocated per batch
    assert grown < 4096, f"RSS grew by {grown} KiB"


def test_two_loaders_and_a_fork_continue_the_same_stream(raw_pack: Path) -> None:
    params = _params(raw_pack)
    a, b = FusedClipLoader(params, 2), FusedClipLoader(params, 2, num_threads=1)
    ia, ib = iter(a), iter(b)
    first = next(ia)
    assert torch.equal(first[0], next(ib)[0])  # interleaved loaders do not disturb each other
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def child() -> None:
        # The child's own threads and LMDB transaction; numpy arrays travel by value (tensors by fd).
        q.put([(lq.numpy().copy(), gt.numpy().copy()) for lq, gt in ia])

    proc = ctx.Process(target=child)
    proc.start()
    from_child = [(torch.from_numpy(lq), torch.from_numpy(gt)) for lq, gt in q.get(timeout=60)]
    proc.join(timeout=60)
    assert proc.exitcode == 0
    _assert_same(from_child, [(lq.clone(), gt.clone()) for lq, gt in ia])
    _assert_same(from_child, [(lq.clone(), gt.clone()) for lq, gt in ib])
    a.close()
    b.close()
    with pytest.raises(InputError, match="closed"):
        iter(a)


def test_pinned_memory_when_cuda_exists(raw_pack: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    params = _params(raw_pack)
    with FusedClipLoader(params, 4) as loader:
        lq, gt = next(iter(loader))
        assert lq.is_pinned() and gt.is_pinned()
    with FusedClipLoader(params, 4, device=torch.device("cuda")) as loader:
        on_gpu = list(loader)  # several batches in flight: each copy must finish before its buffer is reused
        assert all(lq.is_cuda and gt.is_cuda for lq, gt in on_gpu)
        torch.cuda.synchronize()
        got = [(lq.cpu(), gt.cpu()) for lq, gt in on_gpu]
    _assert_same(got, reference_batches(params, 4, 0))


def test_no_pinning_without_cuda(raw_pack: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only machine")
    with FusedClipLoader(_params(raw_pack), 4) as loader:
        assert not next(iter(loader))[0].is_pinned()
    with pytest.raises(ConfigError, match="pin"):
        FusedClipLoader(_params(raw_pack), 4, pin_memory=True)


def test_bad_packs_raise_dataset_errors(raw_pack: Path, png_pack: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    shutil.copytree(raw_pack, missing)
    (missing / "data.mdb").unlink()
    with pytest.raises(DatasetError, match="data.mdb"):
        FusedClipLoader(_params(missing), 2)

    other = tmp_path / "other"
    shutil.copytree(raw_pack, other)
    shutil.copy(png_pack / "data.mdb", other / "data.mdb")
    with pytest.raises(DatasetError, match="different packs"):
        FusedClipLoader(_params(other), 2)

    for storage_pack, name in ((raw_pack, "short_raw"), (png_pack, "short_png")):
        short = tmp_path / name
        shutil.copytree(storage_pack, short)
        env = lmdb.open(str(short), subdir=True)
        with env.begin(write=True) as txn:
            for clip in range(3):
                for f in range(12 if clip == 0 else 9 if clip == 2 else 3):
                    txn.put(frame_key("lq", clip, f), b"\x00" * 17)  # a damaged (short) value everywhere
        env.close()
        with FusedClipLoader(_params(short), 2) as loader, pytest.raises(DatasetError, match="damaged"):
            next(iter(loader))

    truncated = tmp_path / "truncated"
    shutil.copytree(raw_pack, truncated)
    with open(truncated / "data.mdb", "r+b") as f:
        f.truncate(8192)
    with pytest.raises(DatasetError, match="truncated"):
        FusedClipLoader(_params(truncated), 2)


def test_last_batch_keys_name_the_reference_samples(raw_pack: Path) -> None:
    from edvr_fast.data.dataset import ClipDataset

    params = _params(raw_pack)
    ref = ClipDataset(params)
    with FusedClipLoader(params, 4) as loader:
        it = iter(loader)
        for _ in range(2):
            next(it)
            keys = loader.sample_keys(loader.last_indices)
            assert len(keys) == 4
            assert keys == [ref[(0, int(i))]["key"] for i in loader.last_indices]
