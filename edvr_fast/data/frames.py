"""Reading single frames and whole clips from disk: images in natural name order, or video files.

Owns the image/video extension lists, natural sort, truncation checks and 8-bit BGR/gray decoding;
videos are decoded by `edvr_fast.data.video` (PyAV).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edvr_fast.data.video import iter_video, probe_video  # noqa: F401  (re-exported: scan, pack, evaluate)
from edvr_fast.errors import DatasetError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mts", ".m2ts", ".wmv", ".flv",
                        ".mpg", ".mpeg", ".y4m"})

_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders `frame_7.png` before `frame_10.png` (digit runs compare as numbers)."""
    parts = _DIGITS.split(name)
    # Even positions are text, odd positions are digit runs; the tuple shape keeps them comparable.
    return tuple((0, int(p), len(p)) if i % 2 else (1, p.lower(), p) for i, p in enumerate(parts))


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("~$")


def _check_complete(data: bytes, path: Path) -> None:
    """Reject files that stop early: OpenCV happily decodes a cut-off JPEG into a half-grey image."""
    ext = path.suffix.lower()
    if ext in (".jpg", ".jpeg"):
        # The end-of-image marker must follow the last start-of-scan: an EXIF thumbnail's EOI comes
        # earlier, trailing bytes after the EOI are harmless, and entropy-coded data never holds FFD9.
        if data.rfind(b"\xff\xd9") < max(data.rfind(b"\xff\xda"), 0):
            raise DatasetError(
                "JPEG is truncated (no end-of-image marker)", path, "re-export or remove this frame"
            )
    elif ext == ".png":
        if data.rfind(b"IEND") < max(data.rfind(b"IDAT"), 0):
            raise DatasetError("PNG is truncated (no IEND chunk)", path, "re-export or remove this frame")


def to_uint8_hwc(img: np.ndarray | None, path: Path) -> np.ndarray:
    """Bring a decoded image to uint8 HWC: C=3 BGR for colour (alpha dropped), C=1 for gray."""
    if img is None or img.size == 0:
        raise DatasetError(
            "cannot decode image", path, "the file is corrupt or not an image; replace or remove it"
        )
    if img.dtype != np.uint8:
        raise DatasetError(
            f"image has dtype {img.dtype}, only 8-bit images are supported",
            path,
            "convert the clip to 8-bit PNG or JPEG",
        )
    if img.ndim == 2:
        img = img[:, :, None]
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    elif img.shape[2] not in (1, 3):
        raise DatasetError(f"image has {img.shape[2]} channels, expected 1 or 3", path)
    return np.ascontiguousarray(img)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one frame as uint8 HWC (BGR, or C=1 gray); raise DatasetError naming the file if it is bad."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read file ({exc.strerror})", p, "check permissions") from exc
    if not data:
        raise DatasetError("file is empty", p, "re-export or remove this frame")
    _check_complete(data, p)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return to_uint8_hwc(img, p)


def list_frames(folder: str | os.PathLike) -> tuple[list[Path], dict[str, int]]:
    """Image files directly inside `folder`, naturally sorted, plus counts of what was skipped."""
    skipped = {"hidden": 0, "non_image": 0}
    frames = []
    for entry in os.scandir(folder):
        if is_hidden(entry.name):
            skipped["hidden"] += 1
        elif entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_EXTS:
            frames.append(Path(entry.path))
        elif entry.is_file():
            skipped["non_image"] += 1
    frames.sort(key=lambda q: natural_key(q.name))
    return frames, skipped


def read_clip_frames(source: str | os.PathLike, expected: int | None = None) -> Iterator[np.ndarray]:
    """Frames of one clip in order: a folder of images (natural sort) or a video file. For inference.
    `expected`: the video's counted frames (decoding fewer is an error naming the missing frame)."""
    p = Path(source)
    if p.is_dir():
        frames, _ = list_frames(p)
        if not frames:
            raise DatasetError(
                "folder holds no image frames", p, f"expected files ending in {sorted(IMAGE_EXTS)}"
            )
        for f in frames:
            yield read_image(f)
    elif p.suffix.lower() in VIDEO_EXTS:
        yield from iter_video(p, expected)
    elif not p.exists():
        raise DatasetError("clip does not exist", p)
    else:
        raise DatasetError(
            "not a folder of frames or a video file", p, f"videos must end in {sorted(VIDEO_EXTS)}"
        )
