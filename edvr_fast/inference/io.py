"""Where inference reads and writes: clips found under `--input` and the PNG-folder / video-file sinks.

Owns the input layouts (one folder of frames, one video, a tree of clips), the output naming rules, and the
decode/encode time of a run (`IoTimes`); video encoding itself is `edvr_fast.inference.video_out`.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edvr_fast.data.frames import VIDEO_EXTS, read_clip_frames
from edvr_fast.data.scan import scan_frames
from edvr_fast.data.video import VideoInfo, VideoReader, video_info
from edvr_fast.errors import DatasetError, InputError
from edvr_fast.inference.video_out import CONTAINERS, EncodeOptions, VideoWriter

DEFAULT_FPS = 25.0
# PNG encoding is the slow part of writing; a few threads keep it off the GPU's critical path.
_WRITERS = 2
_MAX_PENDING = 8


@dataclass
class IoTimes:
    """Seconds of a run spent outside the model: decode/encode are the background threads' busy time;
    the *_wait fields are how long the model loop blocked on them (what the I/O really cost it)."""

    decode: float = 0.0
    decode_wait: float = 0.0
    encode: float = 0.0
    encode_wait: float = 0.0

    def add_reader(self, r: VideoReader) -> None:
        self.decode += r.decode_seconds
        self.decode_wait += r.wait_seconds

    def add_sink(self, sink) -> None:
        self.encode += getattr(sink, "encode_seconds", 0.0)
        self.encode_wait += getattr(sink, "wait_seconds", 0.0)


@dataclass
class ClipJob:
    """One clip to restore: where it is, how many frames, what the output frames are called."""

    name: str
    source: Path
    kind: str  # "frames" | "video"
    num_frames: int
    frame_names: list[str]  # output file stems, one per frame
    fps: float | None  # of a video input
    info: VideoInfo | None = None  # a video input's stream facts (timestamps, colour, audio)
    times: deque = field(default_factory=deque)  # decoded frames' timestamps, popped by the video sink
    reader: VideoReader | None = None

    def frames(self):
        """The clip's frames in order; a video is decoded once, on a background thread, its counted frames
        checked (a short stream is an error naming the missing frame) and its timestamps kept for the sink."""
        if self.kind != "video":
            return read_clip_frames(self.source)
        self.reader = VideoReader(self.source, self.num_frames, self.times)
        return iter(self.reader)


def _video_job(name: str, path: Path, count: int | None = None) -> ClipJob:
    info = video_info(path, count=count is None)
    n = int(info.num_packets) if count is None else count
    return ClipJob(name, path, "video", n, [f"{i:06d}" for i in range(n)], float(info.rate) if info.rate else None,
                   info)


def find_clips(input_path: str | os.PathLike) -> tuple[list[ClipJob], bool]:
    """(clips, single): one video file or one folder of frames is a single clip; any other folder is
    scanned for clips (folders of frames and video files, named by their path relative to it)."""
    p = Path(input_path)
    if not p.exists():
        raise DatasetError("input does not exist", p, "pass a folder of frames, a folder of clips or a video file")
    if p.is_file():
        if p.suffix.lower() not in VIDEO_EXTS:
            raise DatasetError("input file is not a video", p, f"videos must end in {sorted(VIDEO_EXTS)}")
        return [_video_job(p.stem, p)], True
    result = scan_frames(p)
    jobs = []
    for c in result.clips:
        if c.lq.kind == "video":
            jobs.append(_video_job(c.name, c.lq.path, c.num_frames))  # counted by the scan
        else:
            jobs.append(ClipJob(c.name, c.lq.path, "frames", c.num_frames, [f.stem for f in c.lq_frames], None))
    single = len(jobs) == 1 and jobs[0].source == p
    return jobs, single


def gt_sources(gt: str | os.PathLike, jobs: list[ClipJob], single: bool) -> dict[str, Path]:
    """GT clip of every job: `gt` itself for a single clip, else the GT clip of the same name under `gt`."""
    g = Path(gt)
    if not g.exists():
        raise DatasetError("GT does not exist", g, "pass the GT folder, video or tree of clips")
    if single:
        return {jobs[0].name: g}
    found = {c.name: c.lq.path for c in scan_frames(g).clips}
    missing = [j.name for j in jobs if j.name not in found]
    if missing:
        raise DatasetError(f"no GT clip for {missing[:5]}{' ...' if len(missing) > 5 else ''}", g,
                           "GT clips must have the same relative names as the input clips")
    return {j.name: found[j.name] for j in jobs}


def output_path(job: ClipJob, output: Path, single: bool) -> Path:
    """Single clip: `output` itself. Tree: output/<clip> (a folder of PNGs), or output/<clip>.<ext> for a video
    clip, mirroring the input (its extension kept when we can write it, else .mkv, which holds any stream)."""
    if single:
        return output
    if job.kind == "video":
        suffix = job.source.suffix.lower()
        return output / f"{job.name}{suffix if suffix in CONTAINERS else '.mkv'}"
    return output / job.name


class FrameSink:
    """Writes frames as PNG files named after the input frames, encoded on background threads."""

    def __init__(self, folder: Path, names: list[str]):
        if folder.exists() and not folder.is_dir():
            raise InputError("output exists and is not a folder", folder, "choose a folder or a video file name")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.names, self.index = folder, names, 0
        self.pool = ThreadPoolExecutor(_WRITERS)
        self.pending: list[Future] = []

    def write(self, frame: np.ndarray) -> None:
        path = self.folder / f"{self.names[self.index]}.png"
        self.index += 1
        self.pending.append(self.pool.submit(_write_png, path, frame))
        while len(self.pending) > _MAX_PENDING:
            self.pending.pop(0).result()

    def close(self) -> None:
        try:
            for f in self.pending:
                f.result()
        finally:
            self.pool.shutdown()


def _write_png(path: Path, frame: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", frame)
    if not ok:
        raise InputError("cannot encode PNG", path)
    path.write_bytes(buf.tobytes())


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in CONTAINERS


def open_sink(path: Path, job: ClipJob, fps: float | None, encode: EncodeOptions | None = None
              ) -> FrameSink | VideoWriter:
    """A video writer when `path` ends like a video we can write, else a PNG folder.

    Video input: the output keeps the input frames' timestamps (and its audio/subtitles, unless
    `encode.audio` is off); `fps` instead re-times it at a constant rate (frame i at i / fps), so it is
    refused while audio is kept (it would drift out of sync). Frame-folder input: `fps`, else 25."""
    if not is_video_path(path):
        if path.suffix.lower() in VIDEO_EXTS:
            raise InputError(f"cannot write {path.suffix} video", path,
                             f"write one of {sorted(CONTAINERS)}, or a folder of PNG frames")
        return FrameSink(path, job.frame_names)
    encode = encode or EncodeOptions()
    if job.kind == "video":
        if fps is not None and encode.audio and job.info is not None and job.info.has_side_streams:
            raise InputError("--fps re-times a video input at a constant rate, its audio/subtitles would no longer "
                             "match", job.source, "leave --fps out to keep the input's timing, or add --no-audio")
        return VideoWriter(path, encode, fps=fps, info=job.info, times=job.times)
    return VideoWriter(path, encode, fps=fps or DEFAULT_FPS)


def close_sink(sink, ok: bool, times: IoTimes | None = None) -> None:
    """Finish a sink (`ok`: rename the video into place) or abort it (no file that looks finished is left)."""
    try:
        if ok:
            sink.close()
        elif hasattr(sink, "abort"):
            sink.abort()
        else:
            sink.close()
    finally:
        if times is not None:
            times.add_sink(sink)

