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

With on-the-fly degradation on (`SamplePlan.degrade`), every storage takes a Python path, because the C++
threads have no FFmpeg: the main thread takes the LMDB buffers of the window's GT frames, a
ThreadPoolExecutor of `num_threads` threads crops them (raw: a view; PNG/JPEG: cv2.imdecode), degrades the
window (`degrade_random.apply`: OpenCV and PyAV drop the GIL, numpy noise mostly does) and calls
FrameGather.run, whose C++ code flips/transposes/converts the LQ and GT crops into the batch (GIL released).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from edvr_fast.data.dataset import degraded_lq
from edvr_fast.data.sampler import SamplePlan, SampleSpec
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
        self.degrade = plan.degrade is not None
        codec = CODECS.get(store.storage)
        self.codec = codec if codec in getattr(ext, "loader_codecs", ()) and not self.degrade else None
        if self.codec is not None:
            self.gather = ext.FrameDecoder(num_threads)  # decodes and crops in its C++ threads
        else:
            self.gather = ext.FrameGather(num_threads)
        cv2_path = (not self.raw and self.codec is None) or self.degrade
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
        if self.degrade:
            for b, index in enumerate(p.indices):
                spec = self.plan.decide(p.epoch, int(index))
                deg = self.plan.degradation(p.epoch, int(index))
                p.futures.append(self.decoder.submit(self._degrade_run, b, spec, deg, _GtFrames(self, spec), lq, gt))
            return
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

    def decode(self, clip: int, f: int, kind: str, buf: Any) -> np.ndarray:
        """A stored PNG/JPEG frame as uint8 HWC, checked against its meta shape."""
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
        return img

    def _decode_run(self, frames: list, bufs: list, table: np.ndarray, lq: torch.Tensor, gt: torch.Tensor) -> None:
        imgs = [self.decode(clip, f, kind, buf) for (clip, f, kind), buf in zip(frames, bufs, strict=True)]
        try:
            self.gather.run(imgs, table, lq, gt)
        except ValueError as exc:
            raise self.damaged(frames, str(exc)) from exc

    def _degrade_run(self, b: int, spec: SampleSpec, deg: Any, src: _GtFrames, lq: torch.Tensor,
                     gt: torch.Tensor) -> None:
        window = degraded_lq(src, spec, deg)  # [T, h, w, C] uint8
        target = np.ascontiguousarray(src.crop(spec.clip, spec.center, "gt", *spec.gt_crop))
        flags = int(spec.hflip) | int(spec.vflip) << 1 | int(spec.transpose) << 2
        t_len, (h, w, c), (gh, gw) = len(spec.frames), window.shape[1:], target.shape[:2]
        rows = [(0, b * self.t_len + t, h, w, c, 0, 0, h, w, flags) for t in range(t_len)]
        rows.append((1, b, gh, gw, c, 0, 0, gh, gw, flags))
        self.gather.run([*window, target], np.asarray(rows, dtype=np.int64), lq, gt)

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


class _GtFrames:
    """The GT frames of one sample, taken from the LMDB in the submitting thread (LMDB transactions are not
    shared between threads) and cropped in a pool thread; duck-types the ClipStore that `degraded_lq` reads."""

    def __init__(self, writer: BatchWriter, spec: SampleSpec):
        self._writer, self.scale = writer, writer.store.scale
        store = writer.store
        self._bufs = {f: store.raw(spec.clip, f, "gt") for f in {*spec.frames, spec.center}}

    def crop(self, clip: int, frame: int, kind: str, top: int, left: int, height: int, width: int) -> np.ndarray:
        w = self._writer
        shape = w.store.clips[clip].gt_shape
        buf = self._bufs[frame]
        if w.raw:
            if len(buf) != shape[0] * shape[1] * shape[2]:
                raise w.damaged([], f"frame {frame} (gt) of clip '{w.store.clips[clip].name}' has {len(buf)} "
                                    f"bytes, expected {shape[0]}x{shape[1]}x{shape[2]}")
            img = np.frombuffer(buf, np.uint8).reshape(shape)
        else:
            img = w.decode(clip, frame, kind, buf)
        return img[top : top + height, left : left + width]
