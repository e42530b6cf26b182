"""Reading a packed dataset: `ClipStore` opens the LMDB read-only, lock-free, lazily once per process.

Owns frame lookup by (clip, frame, kind), zero-copy views for raw storage, row-only crops, decoding png/jpg
(after checking the encoded header against meta.json).

Buffer lifetime rule: with raw storage, `raw()` returns a memoryview and `frame()` / `crop()` return
read-only numpy views that point straight into the LMDB memory map. They stay valid while this store's
read transaction in this process is open, i.e. until `store.close()` (or the store is garbage collected).
The transaction is long-lived and per process: after a fork (DataLoader workers, DDP) the child sees a
different pid and opens its own environment and transaction; nothing LMDB-related is shared or pickled.
Copy (`np.array(view)`) anything you keep past `close()`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import lmdb
import numpy as np

from edvr_fast.data.frames import to_uint8_hwc
from edvr_fast.data.headers import header_mismatch
from edvr_fast.data.meta import ID_KEY, KINDS, PackMeta, frame_key, load_meta
from edvr_fast.errors import DatasetError, InputError

# One environment per path and process: LMDB (and py-lmdb) refuse to open the same file twice in one
# process, and an environment inherited through fork must not be used by the child, so a child closes
# its inherited copy (lock-free and read-only, that only unmaps its own pages) and opens a fresh one.
_ENVS: dict[str, tuple[int, lmdb.Environment]] = {}


def _open_env(path: str) -> lmdb.Environment:
    pid = os.getpid()
    held = _ENVS.get(path)
    if held is not None and held[0] == pid:
        return held[1]
    if held is not None:
        held[1].close()
    try:
        env = lmdb.open(
            path, subdir=True, readonly=True, lock=False, readahead=False, meminit=False, max_readers=2048
        )
    except lmdb.Error as exc:
        raise DatasetError(f"cannot open the LMDB ({exc})", path, "re-pack the dataset") from exc
    _ENVS[path] = (pid, env)
    return env


def check_not_truncated(path: str | os.PathLike) -> None:
    """DatasetError when data.mdb is shorter than the pages LMDB says it uses: reading such a page
    through the memory map would kill the process with SIGBUS instead of raising."""
    env = _open_env(str(path))
    used = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = os.path.getsize(os.path.join(path, "data.mdb"))
    if size < used:
        raise DatasetError(
            f"data.mdb is truncated ({size} bytes, the LMDB uses {used})",
            path,
            "copy the pack again or re-pack the dataset",
        )


@dataclass(frozen=True)
class ClipInfo:
    """What a reader needs to know about one packed clip; shapes are (H, W, C)."""

    name: str
    num_frames: int
    lq_shape: tuple[int, int, int]
    gt_shape: tuple[int, int, int]


class ClipStore:
    """Read-only access to a pack made by `edvr_fast.data.pack`; safe to pickle and to use after fork."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.meta: PackMeta = load_meta(self.path)
        if not (self.path / "data.mdb").exists():
            raise DatasetError("meta.json has no data.mdb beside it", self.path, "re-pack the dataset")
        self.clips = [ClipInfo(c.name, c.num_frames, c.lq_shape, c.gt_shape) for c in self.meta.clips]
        self.scale = self.meta.scale
        self.storage = self.meta.storage
        self._pid: int | None = None
        self._txn: lmdb.Transaction | None = None
        self._txn_handle()  # open now so a mismatched meta.json / LMDB fails at construction

    def __len__(self) -> int:
        return len(self.clips)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_pid"], state["_txn"] = None, None
        return state

    def __enter__(self) -> ClipStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _txn_handle(self) -> lmdb.Transaction:
        if self._txn is None or self._pid != os.getpid():
            env = _open_env(str(self.path))
            check_not_truncated(self.path)  # before the first page is read
            txn = env.begin(buffers=True)
            stored = txn.get(ID_KEY)
            if stored is None or bytes(stored).decode("ascii", "replace") != self.meta.pack_id:
                txn.abort()
                raise DatasetError(
                    "meta.json and data.mdb come from different packs (pack id mismatch)",
                    self.path,
                    "copy both files from the same pack, or re-pack the dataset",
                )
            self._txn, self._pid = txn, os.getpid()
        return self._txn

    def close(self) -> None:
        """End this process's read transaction; views from raw()/frame()/crop() are invalid afterwards."""
        if self._txn is not None and self._pid == os.getpid():
            self._txn.abort()
        self._txn, self._pid = None, None

    def _shape(self, clip: int, frame: int, kind: str) -> tuple[int, int, int]:
        if kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
        info = self.clips[clip]
        if not 0 <= frame < info.num_frames:
            raise IndexError(f"frame {frame} out of range for clip '{info.name}' ({info.num_frames} frames)")
        return info.lq_shape if kind == "lq" else info.gt_shape

    def raw(self, clip: int, frame: int, kind: str) -> memoryview:
        """The stored bytes (raw HWC uint8, or a png/jpg file), valid while the read transaction is open."""
        self._shape(clip, frame, kind)
        buf = self._txn_handle().get(frame_key(kind, clip, frame))
        if buf is None:
            raise DatasetError(
                f"LMDB has no frame {frame} ({kind}) of clip '{self.clips[clip].name}'",
                self.path,
                "the pack is damaged; re-pack the dataset",
            )
        return buf

    def frame(self, clip: int, frame: int, kind: str) -> np.ndarray:
        """One frame as uint8 HWC BGR (C=1 gray): a read-only zero-copy view for raw storage."""
        shape = self._shape(clip, frame, kind)
        buf = self.raw(clip, frame, kind)
        if self.storage == "raw":
            if len(buf) != shape[0] * shape[1] * shape[2]:
                raise DatasetError(
                    f"frame {frame} ({kind}) of clip '{self.clips[clip].name}' has {len(buf)} bytes, "
                    f"expected {shape[0]}x{shape[1]}x{shape[2]}",
                    self.path,
                    "the pack is damaged; re-pack the dataset",
                )
            return np.frombuffer(buf, np.uint8).reshape(shape)
        bomb = header_mismatch(buf, self.storage, shape)
        if bomb:  # refused before cv2 allocates what the header claims (decompression bomb)
            raise DatasetError(
                f"frame {frame} ({kind}) of clip '{self.clips[clip].name}' {bomb}",
                self.path,
                "the pack is damaged; re-pack the dataset",
            )
        img = to_uint8_hwc(cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED), self.path)
        if img.shape != shape:
            raise DatasetError(
                f"frame {frame} ({kind}) of clip '{self.clips[clip].name}' decodes to {img.shape}, "
                f"expected {shape}",
                self.path,
                "the pack is damaged; re-pack the dataset",
            )
        return img

    def crop(
        self, clip: int, frame: int, kind: str, top: int, left: int, height: int, width: int
    ) -> np.ndarray:
        """A (height, width, C) window of a frame; for raw storage a view of only rows top..top+height."""
        shape = self._shape(clip, frame, kind)
        h, w, c = shape
        if top < 0 or left < 0 or height <= 0 or width <= 0 or top + height > h or left + width > w:
            raise InputError(
                f"crop top={top} left={left} {height}x{width} is outside the {h}x{w} {kind} frames "
                f"of clip '{self.clips[clip].name}'"
            )
        if self.storage != "raw":
            return self.frame(clip, frame, kind)[top : top + height, left : left + width]
        buf = self.raw(clip, frame, kind)
        if len(buf) != h * w * c:
            return self.frame(clip, frame, kind)  # raises the size error with context
        row = w * c
        rows = np.frombuffer(buf[top * row : (top + height) * row], np.uint8).reshape(height, w, c)
        return rows[:, left : left + width]
