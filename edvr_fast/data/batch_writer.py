"""What fills one batch buffer of the fused loader: sampler decisions -> plan rows -> the thread pool that writes them.

Owns the plan table (documented column order), the choice of C++ pool or cv2 threads, and naming damaged frames.

Raw storage goes to `edvr_fast._C.FrameGather`, a pool of `num_threads` persistent C++ threads fed one plan
per batch (the GIL is only held to build the plan). PNG/JPEG storage goes to `edvr_fast._C.FrameDecoder`
when the extension was built with libpng / libjpeg-turbo (`_C.loader_codecs`): the same kind of pool, whose
threads decode only what each crop needs (JPEG: the crop's iMCU columns and rows plus one iMCU of context;
PNG: the 16-row bands under the crop for the banded PNGs the pack writes, rows down to the crop's last one
for other PNGs) and then crop/convert it. Without those libraries PNG/JPEG decode whole frames with
cv2.imdecode in a Python ThreadPoolExecutor of `num_threads` threads, one sample per job, then
FrameGather.run (both release the GIL).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from edvr_fast.data.sampler import SamplePlan
from edvr_fast.errors import DatasetError

PLAN_COLUMNS = 10  # kind, slot, H, W, C, top, left, h, w, flags (csrc/loader/gather_binding.cpp)
CODECS = {"png": "png", "jpg": "jpeg"}  # pack storage -> the partial decoder of edvr_fast._C that reads it


class Work(Protocol):
    """A batch in flight, as the writer sees it (the loader's _Pending)."""

    epoch: int
    indices: np.ndarray
    ticket: int | None
    frames: list
    futures: list[Future]
    refs: list


class BatchWriter:
    """Writes the samples of a batch into its (lq, gt) buffers with one of the pools described above."""

    def __init__(self, ext: Any, store: Any, plan: SamplePlan, num_threads: int, t_len: int):
        self.store, self.plan, self.t_len = store, plan, t_len
        self.raw = store.storage == "raw"
        codec = CODECS.get(store.storage)
        self.codec = codec if codec in getattr(ext, "loader_codecs", ()) else None
        if self.codec is not None:
            self.gather = ext.FrameDecoder(num_threads)  # decodes and crops in its C++ threads
        else:
            self.gather = ext.FrameGather(num_threads)
        cv2_path = not self.raw and self.codec is None
        self.decoder = ThreadPoolExecutor(num_threads, thread_name_prefix="edvr-decode") if cv2_path else None

    @property
    def backend(self) -> str:
        if self.raw:
            return "raw"
        return {"jpeg": "libjpeg-turbo", "png": "libpng"}.get(self.codec, "cv2")

    def rows(self, epoch: int, indices: np.ndarray) -> tuple[list[tuple[int, int, str]], np.ndarray]:
        """Which frames to read (clip, frame, kind) and the plan table for them (documented column order)."""
        frames, rows = [], []
        for b, index in enumerate(indices):
            spec = self.plan.decide(epoch, int(index))
            info = self.store.clips[spec.clip]
            flags = int(spec.hflip) | int(spec.vflip) << 1 | int(spec.transpose) << 2
            for t, f in enumerate(spec.frames):
                frames.append((spec.clip, f, "lq"))
                rows.append((0, b * self.t_len + t, *info.lq_shape, *spec.lq_crop, flags))
            frames.append((spec.clip, spec.center, "gt"))
            rows.append((1, b, *info.gt_shape, *spec.gt_crop, flags))
        return frames, np.asarray(rows, dtype=np.int64).reshape(-1, PLAN_COLUMNS)

    def submit(self, p: Work, lq: torch.Tensor, gt: torch.Tensor) -> None:
        frames, table = self.rows(p.epoch, p.indices)
        if self.raw or self.codec is not None:
            p.refs, p.frames = [self.store.raw(*f) for f in frames], frames
            try:
                if self.raw:
                    p.ticket = self.gather.submit(p.refs, table, lq, gt)
                else:
                    p.ticket = self.gather.submit(p.refs, table, self.codec, lq, gt)
            except ValueError as exc:
                raise self.damaged(frames, str(exc)) from exc
            return
        per_sample = len(frames) // len(p.indices)
        for k in range(0, len(frames), per_sample):
            part = frames[k : k + per_sample]
            bufs = [self.store.raw(*f) for f in part]
            p.futures.append(self.decoder.submit(self._decode_run, part, bufs, table[k : k + per_sample], lq, gt))

    def _decode_run(self, frames: list, bufs: list, table: np.ndarray, lq: torch.Tensor, gt: torch.Tensor) -> None:
        imgs = []
        for (clip, f, kind), buf in zip(frames, bufs, strict=True):
            img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
            info = self.store.clips[clip]
            want = info.lq_shape if kind == "lq" else info.gt_shape
            if img is not None and img.ndim == 2:
                img = img[:, :, None]
            if img is None or img.dtype != np.uint8 or img.shape != want:
                got = "nothing" if img is None else f"{img.shape} {img.dtype}"
                raise DatasetError(
                    f"frame {f} ({kind}) of clip '{info.name}' decodes to {got}, expected {want} uint8",
                    self.store.path,
                    "the pack is damaged; re-pack the dataset",
                )
            imgs.append(img)
        try:
            self.gather.run(imgs, table, lq, gt)
        except ValueError as exc:
            raise self.damaged(frames, str(exc)) from exc

    def damaged(self, frames: list, why: str) -> DatasetError:
        row = why.split(":")[0].removeprefix("plan row ")
        where = ""
        if row.isdigit() and int(row) < len(frames):
            clip, f, kind = frames[int(row)]
            where = f"frame {f} ({kind}) of clip '{self.store.clips[clip].name}': "
        return DatasetError(f"{where}{why}", self.store.path, "the pack is damaged; re-pack the dataset")

    def done(self, p: Work, block: bool) -> bool:
        """Whether the batch is written (block: wait for it); re-raises a frame's decode error."""
        if p.ticket is not None:
            if block:
                try:
                    self.gather.wait(p.ticket)
                except RuntimeError as exc:  # a frame the C++ decoder could not read
                    raise self.damaged(p.frames, str(exc)) from exc
            return block or self.gather.done(p.ticket)
        if block:
            for fut in p.futures:
                fut.result()  # re-raises a decode error in this thread
            return True
        return all(f.done() for f in p.futures)

    def close(self) -> None:
        if self.decoder is not None:
            self.decoder.shutdown(wait=True)
        self.gather = None
