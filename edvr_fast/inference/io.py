"""Where inference reads and writes: clips found under `--input` and the PNG-folder / video-file sinks.

Owns the input layouts (one folder of frames, one video, a tree of clips) and the output naming rules.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edvr_fast.data.frames import VIDEO_EXTS, probe_video, read_clip_frames
from edvr_fast.data.scan import scan_frames
from edvr_fast.errors import DatasetError, InputError

DEFAULT_FPS = 25.0
# PNG encoding is the slow part of writing; a few threads keep it off the GPU's critical path.
_WRITERS = 2
_MAX_PENDING = 8


@dataclass
class ClipJob:
    """One clip to restore: where it is, how many frames, what the output frames are called."""

    name: str
    source: Path
    kind: str  # "frames" | "video"
    num_frames: int
    frame_names: list[str]  # output file stems, one per frame
    fps: float | None  # of a video input

    def frames(self):
        return read_clip_frames(self.source)


def video_fps(path: Path) -> float | None:
    cap = cv2.VideoCapture(str(path))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return float(fps) if fps and fps > 0 else None


def _video_job(name: str, path: Path) -> ClipJob:
    n, _ = probe_video(path)
    return ClipJob(name, path, "video", n, [f"{i:06d}" for i in range(n)], video_fps(path))


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
            jobs.append(ClipJob(c.name, c.lq.path, "video", c.num_frames, [f"{i:06d}" for i in range(c.num_frames)],
                                video_fps(c.lq.path)))
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
    """Single clip: `output` itself. Tree: output/<clip> (a folder of PNGs), or output/<clip>.mp4 (.avi kept)
    for a video clip, mirroring the input."""
    if single:
        return output
    if job.kind == "video":
        suffix = ".avi" if job.source.suffix.lower() == ".avi" else ".mp4"
        return output / f"{job.name}{suffix}"
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


class VideoSink:
    """Writes frames to a video file (mp4v; MJPG for .avi) at the given frame rate."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.writer = path, fps, None
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:  # the size is only known from the first restored frame
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise InputError("OpenCV cannot open a video writer", self.path,
                                 "use a .mp4 or .avi file name, or write PNG frames to a folder")
        self.writer.write(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def open_sink(path: Path, job: ClipJob, fps: float | None) -> FrameSink | VideoSink:
    """A video sink when `path` ends like a video, else a PNG folder; frame rate: --fps, the input's, or 25."""
    if path.suffix.lower() in VIDEO_EXTS:
        return VideoSink(path, fps or job.fps or DEFAULT_FPS)
    return FrameSink(path, job.frame_names)
