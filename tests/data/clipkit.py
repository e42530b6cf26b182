"""Test helpers: write tiny deterministic clips with OpenCV (frames or video files, input + GT).

Imported by the data tests through conftest, which puts this folder on sys.path.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def frame_pixels(clip: int, frame: int, h: int, w: int, c: int = 3) -> np.ndarray:
    """A deterministic frame whose pixels encode (clip, frame, row, col), so reads can be checked exactly."""
    rows = np.arange(h, dtype=np.int64)[:, None]
    cols = np.arange(w, dtype=np.int64)[None, :]
    base = (rows * 7 + cols * 3 + frame * 11 + clip * 29) % 256
    img = np.stack([(base + 40 * k) % 256 for k in range(c)], axis=-1).astype(np.uint8)
    return img


def write_clip(
    folder: Path, clip: int, n: int, h: int, w: int, *, fmt: str = "{:06d}.png", c: int = 3, start: int = 0
) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(n):
        img = frame_pixels(clip, i, h, w, c)
        assert cv2.imwrite(str(folder / fmt.format(i + start)), img if c == 3 else img[:, :, 0])
        frames.append(img)
    return frames


def write_pair(
    root: Path,
    name: str,
    clip: int,
    n: int,
    h: int,
    w: int,
    *,
    scale: int = 1,
    fmt: str = "{:06d}.png",
    lq_dir: str = "input",
    gt_dir: str = "gt",
    c: int = 3,
) -> None:
    write_clip(root / lq_dir / name, clip, n, h, w, fmt=fmt, c=c)
    write_clip(root / gt_dir / name, clip + 100, n, h * scale, w * scale, fmt=fmt, c=c)


def write_video(path: Path, clip: int, n: int, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v"))
    vw = cv2.VideoWriter(str(path), fourcc, 10, (w, h))
    assert vw.isOpened()
    for i in range(n):
        vw.write(frame_pixels(clip, i, h, w))
    vw.release()
