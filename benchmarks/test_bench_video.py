"""Video decode and encode at 1280x720, one clip of FRAMES frames as the unit: ours (PyAV, FFmpeg, on a
background thread) against OpenCV's VideoCapture / VideoWriter (what `infer` used before: mp4v, no audio, forced rate).

Decoding: an H.264 clip of FRAMES frames read whole as 8-bit BGR. Encoding: the same frames written to
H.264 (ours: libx264 at the default CRF and preset of `infer`, and at `veryfast`) and to OpenCV's mp4v.
The encoders differ in codec and quality (H.264 CRF 16 is visually lossless, mp4v is not), so the encode
ratio is a price, not a like-for-like speed-up; decoding compares the same file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

av = pytest.importorskip("av")

from edvr_fast.data.video import iter_video  # noqa: E402
from edvr_fast.inference.video_out import EncodeOptions, VideoWriter  # noqa: E402

H, W, FRAMES = 720, 1280, 30


def _frames() -> list[np.ndarray]:
    """Smooth, moving content (a natural-looking gradient texture), so the encoders do realistic work."""
    rng = np.random.default_rng(0)
    tex = cv2.resize(rng.integers(0, 256, (H // 16, (W + 4 * FRAMES) // 16, 3), dtype=np.uint8),
                     (W + 4 * FRAMES, H), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(tex[:, 4 * i : 4 * i + W]) for i in range(FRAMES)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    frames = _frames()
    path = tmp_path_factory.mktemp("video_bench") / "clip.mp4"
    w = VideoWriter(path, EncodeOptions(preset="veryfast"), fps=25.0)
    for f in frames:
        w.write(f)
    w.close()
    return path, frames


def _decode_ours(path: Path) -> None:
    n = sum(1 for _ in iter_video(path))
    assert n == FRAMES


def _decode_cv2(path: Path) -> None:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    assert n == FRAMES


@pytest.mark.parametrize("impl", ["ours", "cv2"])
def test_decode_720p(measure, clip, impl):
    path, _ = clip
    fn = _decode_ours if impl == "ours" else _decode_cv2
    # The unit of both tables is one whole clip of FRAMES frames (frames/s = FRAMES / its time).
    measure(lambda: fn(path), group="video decode 1280x720 h264", impl=impl, inner=1, rounds=3,
            unit="clip", frames=FRAMES)


def _encode_ours(out: Path, frames: list[np.ndarray], preset: str | None) -> None:
    w = VideoWriter(out, EncodeOptions(preset=preset), fps=25.0)
    for f in frames:
        w.write(f)
    w.close()


def _encode_cv2(out: Path, frames: list[np.ndarray]) -> None:
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (W, H))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()


@pytest.mark.parametrize("impl", ["ours", "ours-veryfast", "cv2-mp4v"])
def test_encode_720p(measure, clip, tmp_path, impl):
    _, frames = clip
    out = tmp_path / "out.mp4"
    if impl == "cv2-mp4v":
        fn = lambda: _encode_cv2(out, frames)  # noqa: E731
    else:
        fn = lambda: _encode_ours(out, frames, "veryfast" if impl == "ours-veryfast" else None)  # noqa: E731
    measure(fn, group="video encode 1280x720", impl=impl, inner=1, rounds=3, unit="clip", frames=FRAMES)
