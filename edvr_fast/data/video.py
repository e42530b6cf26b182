"""Video files in: any container and codec FFmpeg reads (through PyAV), decoded to 8-bit BGR on a thread.

Owns frame counting, rotation, pixel-format/colour conversion, stream facts (timestamps, colour tags) and
the errors for damaged or truncated streams (naming the file and the frame).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation

from edvr_fast.errors import DatasetError

# Frames decoded ahead of the consumer: enough to hide decoding jitter, small enough to bound memory.
DECODE_QUEUE = 16
_ROTATE = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, -90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180}
# swscale's default RGB<->YUV paths are biased (about -1 level each way, -2 for a decode/encode round trip,
# measured on PyAV 18.1); accurate rounding with full chroma interpolation is unbiased (see README).
SWS_FLAGS = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT | \
    Interpolation.FULL_CHR_H_INP
_HINT = "re-encode it (e.g. ffmpeg -i in -c:v libx264 -crf 16 out.mp4) or extract its frames"


def rotation_of(frame) -> int:
    """The frame's display rotation as 0, 90, 180 or -90 degrees counter-clockwise (nearest quarter turn)."""
    r = int(round((frame.rotation or 0) / 90.0)) % 4
    return (0, 90, 180, -90)[r]


@dataclass
class VideoInfo:
    """What a video's first video stream says about itself (rotation already applied to width/height)."""

    path: Path
    width: int
    height: int
    rotation: int  # degrees counter-clockwise the pixels are turned when decoded (display matrix)
    time_base: Fraction
    rate: Fraction | None  # average frame rate, None when the container does not say
    color: dict[str, int]  # color_primaries, color_trc, colorspace, color_range (FFmpeg enum values)
    codec: str
    pix_fmt: str
    num_packets: int | None  # video packets found by demuxing (None when not counted)
    declared_frames: int  # the container's own frame count (0 when unknown)
    has_side_streams: bool  # audio or subtitle streams are present


def open_container(path: Path):
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"FFmpeg cannot open this video ({exc})", path, _HINT) from exc
    if not container.streams.video:
        container.close()
        raise DatasetError("file holds no video stream", path, _HINT)
    return container


def _count_packets(container, stream, path: Path) -> int:
    """Video packets carrying data, by demuxing only (no decoding): one per frame for every codec we read.
    The decoding pass (which happens anyway, once) checks that each one really becomes a frame."""
    n = 0
    try:
        for pkt in container.demux(stream):
            if pkt.size:
                n += 1
    except av.error.FFmpegError as exc:
        raise DatasetError(f"video is damaged after frame {n} ({exc})", path, _HINT) from exc
    return n


def video_info(path: str | os.PathLike, count: bool = True) -> VideoInfo:
    """Stream facts of a video; `count=True` also counts its frames by demuxing (cheap: no decoding) and
    checks the count against the container's own, so a truncated file is caught before any work."""
    p = Path(path)
    packets = None
    if count:
        c = open_container(p)
        try:
            s = c.streams.video[0]
            declared = int(s.frames or 0)
            packets = _count_packets(c, s, p)
        finally:
            c.close()
        if declared and packets < declared:
            raise DatasetError(f"the header lists {declared} frames but the data stops at frame {packets}", p,
                               "the file is truncated; " + _HINT)
    c = open_container(p)
    try:
        s = c.streams.video[0]
        try:
            first = next(iter(c.decode(s)), None)
        except av.error.FFmpegError as exc:
            raise DatasetError(f"cannot decode frame 0 ({exc})", p, _HINT) from exc
        if first is None:
            raise DatasetError("video has no decodable frame", p, _HINT)
        rotation = rotation_of(first)
        w, h = first.width, first.height
        if rotation in (90, -90):
            w, h = h, w
        color = {k: int(getattr(first, k)) for k in ("color_primaries", "color_trc", "colorspace", "color_range")}
        side = any(st.type in ("audio", "subtitle") for st in c.streams)
        return VideoInfo(p, w, h, rotation, s.time_base or Fraction(1, 1000), s.average_rate or s.guessed_rate,
                         color, s.codec_context.name, first.format.name, packets, int(s.frames or 0), side)
    finally:
        c.close()


def probe_video(path: str | os.PathLike) -> tuple[int, tuple[int, int, int]]:
    """(frame count, (H, W, 3)) of a video; the count is verified when the frames are decoded."""
    info = video_info(path)
    return int(info.num_packets or 0), (info.height, info.width, 3)


@dataclass
class FrameTime:
    """Where a decoded frame sits in time, in the stream's time base (what the encoder copies)."""

    pts: int | None
    duration: int


@dataclass
class VideoReader:
    """Decodes a video on a background thread into a bounded queue; iterate for uint8 HWC BGR frames.

    `expected` (the counted frames) turns a stream that decodes to fewer frames into an error naming the
    frame; `times` receives each frame's timestamp in order (the sink pops them); `decode_seconds` is the
    time the thread spent demuxing, decoding and converting.
    """

    path: Path
    expected: int | None = None
    times: deque = field(default_factory=deque)
    decode_seconds: float = 0.0
    wait_seconds: float = 0.0  # time the consumer waited for frames
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        q: queue.Queue = queue.Queue(DECODE_QUEUE)
        self._thread = threading.Thread(target=self._decode, args=(q,), daemon=True, name="edvr-decode")
        self._thread.start()
        n = 0
        try:
            while True:
                t0 = time.perf_counter()
                item = q.get()
                self.wait_seconds += time.perf_counter() - t0
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                n += 1
                yield item
        finally:
            self.close()
        if self.expected is not None and n < self.expected:
            raise DatasetError(
                f"video decoded to {n} frames but holds {self.expected}: frame {n} is missing or damaged",
                self.path, "the file is truncated or damaged; " + _HINT,
            )

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self, q: queue.Queue) -> None:
        n = 0
        try:
            c = open_container(self.path)
        except DatasetError as exc:
            self._put(q, exc)
            return
        try:
            s = c.streams.video[0]
            s.thread_type = "AUTO"  # frame threads: FFmpeg decodes several frames at once
            tb = s.time_base or Fraction(1, 1000)
            rate = s.average_rate or s.guessed_rate
            step = max(1, round(1 / (rate * tb))) if rate else 1
            declared = int(s.frames or 0)
            prev_pts = None
            t0 = time.perf_counter()
            frames = c.decode(s)
            while not self._stop.is_set():
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.error.FFmpegError as exc:
                    raise DatasetError(f"cannot decode frame {n} ({exc})", self.path,
                                       "the file is damaged; " + _HINT) from exc
                if frame.is_corrupt:
                    raise DatasetError(f"frame {n} is corrupt", self.path, "the file is damaged; " + _HINT)
                img = to_bgr(frame)
                pts = frame.pts
                if pts is None:
                    pts = None if prev_pts is None else prev_pts + step
                dur = int(frame.duration or 0) or step
                self.times.append(FrameTime(pts, dur))
                prev_pts = pts
                self.decode_seconds += time.perf_counter() - t0
                if not self._put(q, img):
                    return
                t0 = time.perf_counter()
                n += 1
            else:
                return
            if declared and n < declared and self.expected is None:
                raise DatasetError(f"video decoded to {n} frames but its header says {declared}: frame {n} is "
                                   "missing or damaged", self.path, "the file is truncated; " + _HINT)
            self._put(q, None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(q, exc)
        finally:
            c.close()


def to_bgr(frame) -> np.ndarray:
    """A decoded PyAV frame -> uint8 HWC BGR with the display rotation applied; any bit depth or chroma
    layout is converted by swscale using the frame's own colour matrix and range."""
    kw = {"format": "bgr24", "interpolation": SWS_FLAGS}
    if frame.color_range:  # swscale assumes limited range unless told; full-range (JPEG) video says so
        kw["src_color_range"] = frame.color_range
    img = frame.to_ndarray(**kw)
    rot = rotation_of(frame)
    if rot:
        img = cv2.rotate(img, _ROTATE[rot])
    return np.ascontiguousarray(img)


def iter_video(path: str | os.PathLike, expected: int | None = None) -> Iterator[np.ndarray]:
    """Decode a video frame by frame (uint8 HWC BGR, display orientation), in presentation order."""
    return iter(VideoReader(Path(path), expected))
