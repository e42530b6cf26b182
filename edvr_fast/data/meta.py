"""The packed dataset's meta.json: dataclasses, (de)serialisation with a version check, LMDB key format.

Owns the on-disk contract between pack (writer) and store / fused loader (readers), and stale checks.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edvr_fast.errors import DatasetError

FORMAT_VERSION = 2  # 2: per-frame CRC-32 under CRC_KEY_FORMAT; 1 (still readable): no checksums
READABLE_VERSIONS = (1, 2)
META_NAME = "meta.json"
# Keys are ASCII: kind ("lq" | "gt"), clip index in meta.clips, frame index; zero-padded to 6 digits
# (wider numbers simply print wider). The C++ loader builds the same string.
KEY_FORMAT = "{kind}/{clip:06d}/{frame:06d}"
# The pack id is also stored under this key, so a meta.json and an LMDB from different packs are caught.
ID_KEY = b"__edvr_fast_pack_id__"
# Version 2: one key per clip holding the zlib.crc32 of every stored value (the bytes under frame_key, raw
# or encoded) as little-endian uint32s, the clip's lq frames first, then its gt frames.
CRC_KEY_FORMAT = "crc32/{clip:06d}"
STORAGES = ("raw", "png", "jpg")
# Bounds a meta.json must respect before any reader sizes a buffer from it (a hostile or damaged file must
# not make us allocate or read beyond what a real video frame needs).
MAX_SIDE = 1 << 16
MAX_FRAMES = 10_000_000
KINDS = ("lq", "gt")


def frame_key(kind: str, clip: int, frame: int) -> bytes:
    """LMDB key of one stored frame."""
    return KEY_FORMAT.format(kind=kind, clip=clip, frame=frame).encode("ascii")


def crc_key(clip: int) -> bytes:
    """LMDB key of one clip's per-frame checksums (format_version 2)."""
    return CRC_KEY_FORMAT.format(clip=clip).encode("ascii")


def encode_crcs(lq: list[int], gt: list[int]) -> bytes:
    """The value stored under crc_key: lq then gt checksums, little-endian uint32."""
    return np.asarray(list(lq) + list(gt), dtype="<u4").tobytes()


def decode_crcs(value: bytes | memoryview, num_frames: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(lq, gt) checksum arrays from a crc_key value, or None when its length does not fit num_frames."""
    if len(value) != 8 * num_frames:
        return None
    crcs = np.frombuffer(bytes(value), dtype="<u4")
    return crcs[:num_frames], crcs[num_frames:]


@dataclass
class SourceInfo:
    """Where one side of a clip came from, with sizes and mtimes to detect a stale pack."""

    kind: str  # "frames" | "video"
    path: str  # absolute folder or video file
    ext: str
    files: list[str]  # frame file names inside `path`, in packed order; empty for a video
    size_bytes: int
    mtime_ns: int


@dataclass
class ClipMeta:
    """One packed clip. Shapes are (H, W, C) of the uint8 HWC frames as stored."""

    name: str
    num_frames: int
    lq_shape: tuple[int, int, int]
    gt_shape: tuple[int, int, int]
    dtype: str
    storage: str
    lq_source: SourceInfo
    gt_source: SourceInfo

    def to_json(self) -> dict[str, Any]:
        (h, w, c), (gh, gw, gc) = self.lq_shape, self.gt_shape
        return {
            "name": self.name,
            "num_frames": self.num_frames,
            "lq": {"h": h, "w": w, "c": c},
            "gt": {"h": gh, "w": gw, "c": gc},
            "dtype": self.dtype,
            "storage": self.storage,
            "lq_source": asdict(self.lq_source),
            "gt_source": asdict(self.gt_source),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClipMeta:
        return cls(
            name=d["name"],
            num_frames=int(d["num_frames"]),
            lq_shape=(int(d["lq"]["h"]), int(d["lq"]["w"]), int(d["lq"]["c"])),
            gt_shape=(int(d["gt"]["h"]), int(d["gt"]["w"]), int(d["gt"]["c"])),
            dtype=d["dtype"],
            storage=d["storage"],
            lq_source=SourceInfo(**d["lq_source"]),
            gt_source=SourceInfo(**d["gt_source"]),
        )


@dataclass
class PackMeta:
    """Everything a reader needs about a pack; frames are uint8, HWC, C-contiguous, BGR (or C=1 gray)."""

    pack_id: str
    storage: str
    scale: int
    clips: list[ClipMeta]
    pairing: dict[str, str]  # {"mode": "subfolders" | "roots", "input_root": ..., "gt_root": ...}
    created: str = ""
    skipped: dict[str, int] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    dtype: str = "uint8"
    layout: str = "HWC"
    channel_order: str = "BGR"  # "BGR" for C=3, "gray" for C=1
    key_format: str = KEY_FORMAT
    degradation: dict[str, Any] | None = None  # optional: how the LQ was derived from GT (pack --degrade)

    def clip_index(self, name: str) -> int:
        for i, c in enumerate(self.clips):
            if c.name == name:
                return i
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        d = {
            "format_version": self.format_version,
            "pack_id": self.pack_id,
            "created": self.created,
            "storage": self.storage,
            "dtype": self.dtype,
            "layout": self.layout,
            "channel_order": self.channel_order,
            "key_format": self.key_format,
            "id_key": ID_KEY.decode("ascii"),
            "scale": self.scale,
            "pairing": self.pairing,
            "skipped": self.skipped,
            "num_clips": len(self.clips),
            "num_frames": sum(c.num_frames for c in self.clips),
            "clips": [c.to_json() for c in self.clips],
        }
        if self.degradation is not None:
            d["degradation"] = self.degradation
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PackMeta:
        return cls(
            pack_id=d["pack_id"],
            storage=d["storage"],
            scale=int(d["scale"]),
            clips=[ClipMeta.from_json(c) for c in d["clips"]],
            pairing=dict(d["pairing"]),
            created=d.get("created", ""),
            skipped=dict(d.get("skipped", {})),
            format_version=int(d["format_version"]),
            dtype=d["dtype"],
            layout=d["layout"],
            channel_order=d["channel_order"],
            key_format=d["key_format"],
            degradation=d.get("degradation"),
        )


def save_meta(meta: PackMeta, folder: str | os.PathLike) -> Path:
    path = Path(folder) / META_NAME
    tmp = path.with_name(META_NAME + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta.to_json(), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_meta(path: str | os.PathLike) -> PackMeta:
    """Load meta.json (or the pack folder holding it); DatasetError if missing, malformed, other version."""
    p = Path(path)
    if p.is_dir():
        p = p / META_NAME
    if not p.exists():
        raise DatasetError(
            "no meta.json here: not a packed dataset (or the pack did not finish)",
            p,
            "pack clips with `python -m edvr_fast.data.pack SRC DST`",
        )
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"meta.json is unreadable ({exc})", p, "re-pack the dataset") from exc
    version = d.get("format_version") if isinstance(d, dict) else None
    if version not in READABLE_VERSIONS:
        raise DatasetError(
            f"meta.json has format_version {version!r}, this edvr_fast reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}",
            p,
            "re-pack the dataset with this version of edvr_fast",
        )
    try:
        meta = PackMeta.from_json(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(
            f"meta.json is malformed (missing or bad field {exc})", p, "re-pack the dataset"
        ) from exc
    if meta.storage not in STORAGES:
        raise DatasetError(f"unknown storage {meta.storage!r}", p, f"expected one of {STORAGES}")
    why = hostile_meta(meta)
    if why:
        raise DatasetError(f"meta.json is invalid: {why}", p, "re-pack the dataset")
    return meta


def _bad_name(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return "is empty or not a string"
    if "\\" in name or "\x00" in name or name.startswith("/"):
        return "contains a backslash, a NUL or starts with '/'"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "has an empty, '.' or '..' path component"
    return None


def hostile_meta(meta: PackMeta) -> str | None:
    """Why a loaded meta.json cannot be trusted to size buffers or name files, or None when it is sane.

    Clip names are relative paths (`a/b` for nested folders) and end up in output file names, so no
    '..', no absolute path, no backslash; shapes and counts are bounded positive integers.
    """
    if not 1 <= meta.scale <= 16:
        return f"scale {meta.scale} is outside 1..16"
    if not meta.clips:
        return "it lists no clips"
    seen: set[str] = set()
    for i, c in enumerate(meta.clips):
        bad = _bad_name(c.name)
        if bad:
            return f"clip {i} name {c.name!r} {bad}"
        if c.name in seen:
            return f"clip name {c.name!r} appears twice"
        seen.add(c.name)
        if not 1 <= c.num_frames <= MAX_FRAMES:
            return f"clip {c.name!r} has num_frames {c.num_frames}, expected 1..{MAX_FRAMES}"
        for kind, (h, w, ch) in (("lq", c.lq_shape), ("gt", c.gt_shape)):
            if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and ch in (1, 3)):
                return (
                    f"clip {c.name!r} has {kind} size {h}x{w}x{ch}; expected sides 1..{MAX_SIDE} "
                    "and 1 or 3 channels"
                )
        if c.storage != meta.storage or c.dtype != "uint8":
            return f"clip {c.name!r} has storage {c.storage!r} / dtype {c.dtype!r}, the pack {meta.storage!r}"
    return None


def source_info_changes(src: SourceInfo) -> str | None:
    """Why one packed side no longer matches its files on disk, or None if it still does."""
    base = Path(src.path)
    paths = [base / f for f in src.files] if src.kind == "frames" else [base]
    size, mtime = 0, 0
    for q in paths:
        try:
            st = q.stat()
        except OSError:
            return f"{q} is missing"
        size += st.st_size
        mtime = max(mtime, st.st_mtime_ns)
    if src.kind == "frames":
        from edvr_fast.data.frames import list_frames

        try:
            now = [f.name for f in list_frames(base)[0]]
        except OSError:
            return f"{base} is missing"
        if now != src.files:
            return f"{base} now holds {len(now)} frames, packed {len(src.files)}"
    if size != src.size_bytes:
        return f"{src.path} changed size since packing"
    if mtime != src.mtime_ns:
        return f"{src.path} was modified since packing"
    return None


def stale_sources(meta: PackMeta) -> list[str]:
    """Reasons the pack is stale (its source clips changed on disk); empty if it is up to date."""
    reasons = []
    for clip in meta.clips:
        for src in (clip.lq_source, clip.gt_source):
            why = source_info_changes(src)
            if why:
                reasons.append(f"clip '{clip.name}': {why}")
    return reasons
