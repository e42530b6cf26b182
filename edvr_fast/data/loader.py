"""The fused loader: sampler decisions -> C++ crop/flip/convert threads -> a ring of (pinned) batch buffers.

Owns `FusedClipLoader` (batches equal to ClipDataset + default collate), its buffer ring, CUDA prefetch, resume.

Threads: `batch_writer.BatchWriter` fills each buffer (C++ pools for raw and PNG/JPEG, cv2 threads without
the codec libraries); `FusedClipLoader.decode_backend` says which path runs.
Ring: `prefetch` batches are in flight; a CPU buffer is only refilled once the batch tensors handed to the
caller are gone (storage use count back to the ring's own) and its host-to-device copy event has fired;
a buffer still held by the caller is left to the caller and replaced by a fresh one.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future

import numpy as np
import torch

from edvr_fast.data.batch_writer import CODECS, PLAN_COLUMNS, BatchWriter
from edvr_fast.data.dataset import ClipDataset, DatasetParams
from edvr_fast.data.sampler import ClipSampler
from edvr_fast.errors import ConfigError, DatasetError, InputError

OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
__all__ = ["CODECS", "OUT_DTYPES", "PLAN_COLUMNS", "FusedClipLoader"]


def _extension():
    from edvr_fast._extension import load_extension

    _C, why = load_extension()
    if _C is None:
        from edvr_fast.errors import ExtensionError

        raise ExtensionError(
            f"the fused loader needs the compiled extension edvr_fast._C ({why})",
            hint="build it with `pip install --no-build-isolation .`, or use ClipDataset with a DataLoader",
        )
    return _C


def _use_count(t: torch.Tensor) -> int:
    """How many tensors share t's storage (views handed to the caller keep it above the ring's own)."""
    return torch._C._storage_Use_Count(t.untyped_storage()._cdata)


def _check_not_truncated(path: os.PathLike) -> None:
    from edvr_fast.data.store import check_not_truncated  # lmdb loads with the store, not at import

    check_not_truncated(path)


class _Slot:
    """One ring buffer: the full-batch lq/gt tensors and the event of the last copy that read them."""

    def __init__(self, lq: torch.Tensor, gt: torch.Tensor):
        self.lq, self.gt, self.event = lq, gt, None
        self.base = (_use_count(lq), _use_count(gt))

    def held_by_caller(self) -> bool:
        return (_use_count(self.lq), _use_count(self.gt)) != self.base


class _Pending:
    """A batch in flight: its samples, buffer, the work writing it, and the references that work needs."""

    def __init__(self, epoch: int, indices: np.ndarray, slot: _Slot):
        self.epoch, self.indices, self.slot = epoch, indices, slot
        self.ticket: int | None = None
        self.frames: list = []  # (clip, frame, kind) per plan row, to name a frame that fails to decode
        self.futures: list[Future] = []
        self.refs: list = []  # LMDB buffers read by the C++ threads: alive until the batch is written
        self.gpu: tuple[torch.Tensor, torch.Tensor] | None = None
        self.copied: torch.cuda.Event | None = None


class _Pass:
    """One pass over an epoch (what iter(loader) returns); a later iter(loader) ends it."""

    def __init__(self, loader: FusedClipLoader, token: int):
        self._loader, self._token = loader, token

    def __iter__(self) -> _Pass:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._loader._pass_token != self._token:
            raise InputError("this pass over the loader was replaced by a newer iter(loader)")
        return self._loader._next_batch()


class FusedClipLoader:
    """Batches `(lq [B,T,C,h,w], gt [B,C,H,W])` of a pack, equal to ClipDataset + collate for the same seed.

    Samples come from a ClipSampler (seed = the sample seed; DDP shards by rank/world_size, padded to equal
    length). With `device` (CUDA) batches are copied there on a side stream and yielded as device tensors.
    A pass resumed with `load_state_dict` yields the rest of that epoch; `len()` is batches per full epoch.
    """

    def __init__(
        self,
        dataset_params: DatasetParams,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        num_threads: int = 2,
        out_dtype: torch.dtype = torch.float32,
        pin_memory: bool | None = None,
        device: torch.device | str | None = None,
        prefetch: int = 2,
        drop_last: bool = True,
        shuffle: bool = True,
    ):
        if batch_size < 1 or num_threads < 1 or prefetch < 1:
            raise InputError(
                f"batch_size, num_threads, prefetch must be >= 1 ({batch_size}, {num_threads}, {prefetch})"
            )
        if out_dtype not in OUT_DTYPES:
            raise InputError(f"out_dtype must be one of {OUT_DTYPES}, got {out_dtype}")
        self._ext = _extension()
        if os.path.exists(os.path.join(dataset_params.path, "data.mdb")):
            _check_not_truncated(dataset_params.path)  # before anything reads a page past the end (SIGBUS)
        self.dataset = ClipDataset(dataset_params)  # validates the pack and split, builds the SamplePlan
        self.store, self.plan = self.dataset.store, self.dataset.plan
        self.last_indices = np.empty(0, dtype=np.int64)
        self.batch_size, self.num_threads, self.out_dtype = int(batch_size), int(num_threads), out_dtype
        self.prefetch, self.drop_last = int(prefetch), drop_last
        self.sampler = ClipSampler(
            len(self.plan), shuffle=shuffle, seed=dataset_params.sample.seed, rank=rank, world_size=world_size
        )
        self.device = torch.device(device) if device is not None else None
        if self.device is not None and self.device.type not in ("cuda", "cpu"):
            raise InputError(f"device must be a CUDA device (or cpu / None), got {self.device}")
        if self.device is not None and self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {self.device} asked for, but CUDA is not available")
        if self.device is not None and self.device.type == "cpu":
            self.device = None
        cuda = torch.cuda.is_available()
        if pin_memory and not cuda:
            raise ConfigError("pin_memory=True needs CUDA (pinning needs a driver)", hint="leave pin_memory=None")
        self.pin_memory = cuda if pin_memory is None else bool(pin_memory)
        self._shapes = self._batch_shapes()
        self._epoch_start = 0  # where the next pass starts in this epoch (set by load_state_dict)
        self._pass_token = 0  # which _Pass iterator is current
        self._reset_process_state()

    # ---- set-up -------------------------------------------------------------------------------------------

    def _batch_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        clips = [self.store.clips[c] for c in self.dataset.clip_ids]
        chans = {c.lq_shape[2] for c in clips} | {c.gt_shape[2] for c in clips}
        if len(chans) != 1:
            raise DatasetError("clips of this split mix gray and colour frames", self.store.path, "re-pack")
        ch, t, s, p = chans.pop(), self.plan.params.num_frame, self.plan.scale, self.plan.params
        if self.plan.crop_lq is not None:
            h = w = self.plan.crop_lq
        else:
            sizes = {c.lq_shape[:2] for c in clips}
            if len(sizes) != 1:
                raise ConfigError("gt_size=None (full frames) needs clips of one size to batch them")
            h, w = sizes.pop()
            if p.use_rot and h != w:
                raise ConfigError("full non-square frames cannot be transposed into one batch", hint="use_rot=False")
        return (self.batch_size, t, ch, h, w), (self.batch_size, ch, h * s, w * s)

    def _reset_process_state(self) -> None:
        """Threads, buffers and streams of this process; after a fork the child builds its own."""
        if getattr(self, "_pid", None) is not None:
            _check_not_truncated(self.store.path)  # the file may have changed since the parent checked
        self._pid = os.getpid()
        if torch.cuda._is_in_bad_fork():  # CUDA cannot be used in a child forked after CUDA started
            self.pin_memory, self.device = False, None
        self._writer = BatchWriter(self._ext, self.store, self.plan, self.num_threads, self._shapes[0][1])
        self._ring: list[_Slot] = []
        self._pending: deque[_Pending] = deque()
        self._stream = torch.cuda.Stream(self.device) if self.device is not None else None
        self._batches: list[np.ndarray] = []
        self._next = 0
        self._consumed = self._epoch_start
        self._pass_epoch = self.sampler.epoch
        self._closed = False

    def _check_process(self) -> None:
        if self._closed:
            raise InputError("this FusedClipLoader is closed")
        if os.getpid() != self._pid:
            # Forked: the parent's threads and its LMDB buffers do not exist here. Re-plan what was in
            # flight, in the same order, so the child continues the very same stream.
            todo = [p.indices for p in self._pending] + self._batches[self._next :]
            consumed, epoch = self._consumed, self._pass_epoch
            self._reset_process_state()
            self._batches, self._consumed, self._pass_epoch = todo, consumed, epoch

    # ---- public API ---------------------------------------------------------------------------------------

    @property
    def decode_backend(self) -> str:
        """Which path reads frames: "raw" (C++ crop of stored pixels), "libjpeg-turbo" / "libpng" (C++
        partial decode in the pool threads), or "cv2" (whole-frame cv2.imdecode, the fallback)."""
        return self._writer.backend

    @property
    def _gather(self) -> object:  # the C++ pool (tests check which one runs)
        return self._writer.gather

    @property
    def _decoder(self) -> object:  # the cv2 decode threads, None when a C++ pool decodes
        return self._writer.decoder

    def __len__(self) -> int:
        n = self.sampler.shard_size
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.sampler.epoch:
            self._epoch_start = 0
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> _Pass:
        self._check_process()
        self._drain()
        order = self.sampler.indices(self.sampler.epoch)[self._epoch_start :]
        cut = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        self._batches = [order[k : min(k + self.batch_size, cut)] for k in range(0, cut, self.batch_size)]
        self._next, self._consumed, self._pass_epoch = 0, self._epoch_start, self.sampler.epoch
        self._epoch_start = 0  # a resumed start applies to one pass only
        self._pass_token += 1
        return _Pass(self, self._pass_token)

    def sample_keys(self, indices: np.ndarray) -> list[str]:
        """"clip/centre" of each sample index, as the reference ClipDataset names its samples."""
        keys = []
        for i in indices:
            clip, centre = self.plan.locate(int(i))
            keys.append(f"{self.store.clips[clip].name}/{centre}")
        return keys

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_process()
        self._fill()
        if not self._pending:
            raise StopIteration
        p = self._pending.popleft()
        self._finish(p)
        self.last_indices = p.indices  # sample indices of the batch handed out (for tracing which data ran)
        self._consumed += len(p.indices)
        n = len(p.indices)
        # Views first: they raise the buffer's use count, so the refill below cannot pick this buffer.
        out = p.gpu if p.gpu is not None else (p.slot.lq[:n], p.slot.gt[:n])
        if self._pending and self._writer.done(self._pending[0], block=False):
            self._finish(self._pending[0])  # start the next host-to-device copy now, behind this batch
        self._fill()
        if p.gpu is not None:
            cur = torch.cuda.current_stream(self.device)
            cur.wait_event(p.copied)
            for t in p.gpu:
                t.record_stream(cur)  # the allocator must not reuse this memory until cur is done with it
        return out

    def state_dict(self) -> dict:
        """Resume state: epoch and the samples of this rank already yielded (not the ones in flight)."""
        return {"sampler": self.sampler.state_dict(consumed=self._consumed), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict) -> None:
        """Continue exactly where `state` was taken: the next pass yields the rest of that epoch."""
        self._check_process()
        self._drain()
        self.sampler.load_state_dict(state["sampler"])
        self._epoch_start = self._consumed = int(state["sampler"]["position"])
        self._batches, self._next = [], 0
        self._pass_token += 1  # an iterator from before the load must not continue the old stream

    def close(self) -> None:
        """Wait for work in flight, stop the threads and end this process's LMDB read transaction."""
        if self._closed or os.getpid() != self._pid:
            self._closed = True
            return
        self._drain()
        self._writer.close()
        self._ring = []
        self.store.close()
        self._closed = True

    def __enter__(self) -> FusedClipLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed and os.getpid() == self._pid:
                self._drain()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    # ---- the pipeline -------------------------------------------------------------------------------------

    def _fill(self) -> None:
        while len(self._pending) < self.prefetch and self._next < len(self._batches):
            indices = self._batches[self._next]
            self._next += 1
            p = _Pending(self._pass_epoch, indices, self._free_slot())
            self._pending.append(p)
            self._writer.submit(p, p.slot.lq, p.slot.gt)

    def _free_slot(self) -> _Slot:
        busy = {id(p.slot) for p in self._pending}
        for slot in self._ring:
            if id(slot) in busy or slot.held_by_caller():
                continue
            if slot.event is not None:
                slot.event.synchronize()  # the last device copy reading this buffer must be over
                slot.event = None
            return slot
        slot = self._new_slot()
        if len(self._ring) >= self.prefetch + 2:
            # Every spare buffer is still held by the caller: it keeps that one, the ring forgets it.
            for i, old in enumerate(self._ring):
                if id(old) not in busy:
                    self._ring[i] = slot
                    return slot
        self._ring.append(slot)
        return slot

    def _new_slot(self) -> _Slot:
        lq_shape, gt_shape = self._shapes
        kw = dict(dtype=self.out_dtype, pin_memory=self.pin_memory)
        return _Slot(torch.empty(lq_shape, **kw), torch.empty(gt_shape, **kw))

    def _finish(self, p: _Pending) -> None:
        """Wait for the batch to be written; start its device copy (once) when prefetching to a GPU."""
        self._writer.done(p, block=True)
        p.refs = []
        if self._stream is None or p.gpu is not None:
            return
        n = len(p.indices)
        with torch.cuda.stream(self._stream):
            p.gpu = (
                p.slot.lq[:n].to(self.device, non_blocking=True),
                p.slot.gt[:n].to(self.device, non_blocking=True),
            )
            p.copied = torch.cuda.Event()
            p.copied.record(self._stream)
        p.slot.event = p.copied  # the buffer is not refilled before this copy has read it

    def _drain(self) -> None:
        while self._pending:
            p = self._pending.popleft()
            try:
                self._writer.done(p, block=True)
            except Exception:  # noqa: BLE001 - abandoned batches: their errors no longer matter
                pass
        self._batches, self._next = [], 0
