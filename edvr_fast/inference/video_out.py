"""Video files out: FFmpeg encoders through PyAV on a background thread, the input's audio and subtitle
streams remuxed unchanged, input timestamps and colour tags kept, written under a temporary name.

Owns the codec table (names, default CRF and preset, pixel formats) and the encoder run-time checks.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from edvr_fast.data.video import SWS_FLAGS, VideoInfo, open_container
from edvr_fast.errors import InputError

# Frames waiting for the encoder thread: bounded, so a slow encoder holds back the model, not memory.
ENCODE_QUEUE = 8
X26_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class CodecSpec:
    """One `--codec` value: FFmpeg encoders in order of preference and how its quality/speed are set."""

    encoders: tuple[str, ...]
    crf: int | None  # default CRF (None: lossless, no CRF)
    crf_max: int
    presets: tuple[str, ...]  # accepted --encoder-preset values ("" = none)
    default_preset: str | None
    default_pix_fmt: str


# Default CRFs are "visually lossless" for restoration output: x264 CRF 16 sits below the CRF 17-18 usually
# called visually lossless (restored fine texture is what a codec smooths first); x265 and the libvpx/SVT
# scales are offset to about the same quality (measured on our test clips, see README and BENCHMARKS.md).
CODECS: dict[str, CodecSpec] = {
    "h264": CodecSpec(("libx264",), 16, 51, X26_PRESETS, "medium", "yuv420p"),
    "h265": CodecSpec(("libx265",), 18, 51, X26_PRESETS, "medium", "yuv420p"),
    "av1": CodecSpec(("libsvtav1", "libaom-av1"), 20, 63, tuple(str(i) for i in range(14)), "8", "yuv420p"),
    "vp9": CodecSpec(("libvpx-vp9",), 20, 63, tuple(str(i) for i in range(9)), "4", "yuv420p"),
    "ffv1": CodecSpec(("ffv1",), None, 0, (), None, "rgb"),
}
PIX_FMTS = ("yuv420p", "yuv444p", "rgb")
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
# Frame-folder input is sRGB: BT.709 primaries, sRGB transfer, BT.709 matrix, limited range (FFmpeg enums).
SRGB_TAGS = {"color_primaries": 1, "color_trc": 13, "colorspace": 1, "color_range": 1}


@dataclass
class EncodeOptions:
    """The video-output flags of `infer`."""

    codec: str | None = None  # None: h264 (vp9 for .webm)
    crf: int | None = None  # None: the codec's default
    preset: str | None = None  # --encoder-preset
    pix_fmt: str | None = None  # None: yuv420p (rgb for ffv1)
    audio: bool = True  # copy the input's audio and subtitle streams

    def resolve(self, path: Path) -> tuple[str, CodecSpec]:
        codec = self.codec or ("vp9" if path.suffix.lower() == ".webm" else "h264")
        if codec not in CODECS:
            raise InputError(f"unknown --codec {codec!r}", hint=f"choose one of {sorted(CODECS)}")
        spec = CODECS[codec]
        if self.crf is not None:
            if spec.crf is None:
                raise InputError(f"--crf does not apply to {codec} (lossless)", hint="leave --crf out")
            if not 0 <= self.crf <= spec.crf_max:
                raise InputError(f"--crf for {codec} must be in 0..{spec.crf_max}, got {self.crf}")
        if self.preset is not None and self.preset not in spec.presets:
            allowed = ", ".join(spec.presets) if spec.presets else "none (leave it out)"
            raise InputError(f"--encoder-preset {self.preset!r} is not a {codec} preset", hint=f"{codec}: {allowed}")
        if self.pix_fmt is not None and self.pix_fmt not in PIX_FMTS:
            raise InputError(f"unknown --pix-fmt {self.pix_fmt!r}", hint=f"choose one of {list(PIX_FMTS)}")
        return codec, spec


def available_encoders() -> set[str]:
    import av

    return set(av.codecs_available)


def pick_encoder(codec: str, spec: CodecSpec) -> str:
    """The first encoder of `codec` this PyAV build has; else an error naming what it does have."""
    have = available_encoders()
    for enc in spec.encoders:
        if enc in have:
            return enc
    alternatives = [c for c, s in CODECS.items() if any(e in have for e in s.encoders)]
    raise InputError(f"the installed PyAV has no {codec} encoder ({' or '.join(spec.encoders)})",
                     hint=f"use --codec {' / '.join(alternatives) or '(none available)'}, or install a PyAV "
                     "build with it")


def _container_codecs(fmt: str) -> set[str]:
    import av

    c = av.open(os.devnull, "w", format=fmt)
    try:
        return set(c.supported_codecs)
    finally:
        c.close()


def _pix_fmt(encoder: str, wanted: str) -> str:
    import av

    formats = [f.name for f in (av.codec.Codec(encoder, "w").video_formats or ())]
    choices = ("gbrp", "bgr0") if wanted == "rgb" else (wanted,)
    for f in choices:
        if f in formats:
            return f
    usable = [p for p in PIX_FMTS if p in formats or (p == "rgb" and {"gbrp", "bgr0"} & set(formats))]
    raise InputError(f"encoder {encoder} cannot write pixel format {wanted}", hint=f"it takes {usable}")


def _encoder_options(encoder: str, crf: int | None, preset: str | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    if encoder in ("libx264", "libx265", "libsvtav1"):
        opts.update(crf=str(crf), preset=preset)
        if encoder == "libx265":
            opts["x265-params"] = "log-level=error"
    elif encoder in ("libvpx-vp9", "libaom-av1"):
        # Constant quality needs the bit-rate target off; cpu-used is their speed knob.
        opts.update(crf=str(crf), b="0", **{"cpu-used": preset, "row-mt": "1"})
    elif encoder == "ffv1":
        opts.update(level="3", slicecrc="1")
    return {k: v for k, v in opts.items() if v is not None}


class VideoWriter:
    """Encodes BGR frames on a thread into `path` (written as `.<name>.partial`, renamed by `close`).

    `info` (the input video's facts) carries timestamps' time base and colour tags; `times` is the input
    frames' timestamps (popped per frame, so the output keeps them: variable frame rate survives); `source`
    is remuxed for its audio and subtitle streams unless `options.audio` is off. `encode_seconds` is the
    thread's busy time; `wait_seconds` how long `write` blocked on a full queue.
    """

    def __init__(self, path: Path, options: EncodeOptions, *, fps: float | None, info: VideoInfo | None = None,
                 times: deque | None = None):
        import av

        self.path = path
        suffix = path.suffix.lower()
        if suffix not in CONTAINERS:
            raise InputError(f"cannot write video files ending in {suffix!r}", path,
                             f"use one of {sorted(CONTAINERS)} or a folder for PNG frames")
        self.codec, spec = options.resolve(path)
        self.encoder = pick_encoder(self.codec, spec)
        self.crf = spec.crf if options.crf is None else options.crf
        self.pix_fmt = _pix_fmt(self.encoder, options.pix_fmt or spec.default_pix_fmt)
        self.options = _encoder_options(self.encoder, self.crf, options.preset or spec.default_preset)
        self.info, self.times = info, times
        if fps is not None:
            self.rate = Fraction(fps).limit_denominator(1001000)
            self.time_base, self.times = 1 / self.rate, None  # --fps: constant rate, input timestamps dropped
        elif info is not None and suffix == ".avi":  # AVI has no timestamps: constant rate at the input's
            self.rate = info.rate or Fraction(25)
            self.time_base, self.times = 1 / self.rate, None
        elif info is not None:
            self.rate = info.rate or Fraction(25)
            self.time_base = info.time_base
        else:
            self.rate = Fraction(25)
            self.time_base = 1 / self.rate
        self.color = dict(info.color) if info is not None else dict(SRGB_TAGS)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.partial")
        self.out = av.open(str(self.tmp), "w", format=CONTAINERS[suffix])
        self.side = []  # (input stream index, output stream)
        self.src = None
        try:
            ok = self.out.supported_codecs
            vcodec = av.codec.Codec(self.encoder, "w").name
            if vcodec not in ok:
                fits = [s for s, f in CONTAINERS.items() if vcodec in _container_codecs(f)]
                raise InputError(f"a {suffix} file cannot hold {self.codec} video", path,
                                 f"use --codec with another codec, or a {' / '.join(sorted(set(fits)))} file")
            if options.audio and info is not None and info.has_side_streams:
                self._add_side_streams(ok)
        except BaseException:
            self._discard()
            raise
        self.queue: queue.Queue = queue.Queue(ENCODE_QUEUE)
        self.error: BaseException | None = None
        self.encode_seconds = 0.0
        self.wait_seconds = 0.0
        self.frames = 0
        self._thread: threading.Thread | None = None

    def _add_side_streams(self, supported: set[str]) -> None:
        self.src = open_container(self.info.path)
        for s in self.src.streams:
            if s.type not in ("audio", "subtitle"):
                continue
            name = s.codec_context.name if s.codec_context is not None else s.codec.name
            if name not in supported:
                raise InputError(f"a {self.path.suffix} file cannot hold the input's {s.type} stream #{s.index} "
                                 f"({name})", self.path, "write .mkv (holds almost anything), or add --no-audio")
            self.side.append((s.index, self.out.add_stream_from_template(s)))

    # -- main thread -------------------------------------------------------------------------------------
    def write(self, frame: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, args=(frame.shape,), daemon=True, name="edvr-encode")
            self._thread.start()
        ft = self.times.popleft() if self.times else None
        t0 = time.perf_counter()
        while True:
            try:
                self.queue.put((frame, ft), timeout=0.1)
                break
            except queue.Full:
                if self.error is not None:
                    raise self.error from None
        self.wait_seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Finish encoding, copy the remaining audio/subtitles, and rename the file into place."""
        try:
            if self._thread is None:
                raise InputError("no frame was written", self.path)
            self.queue.put(None)
            self._thread.join()
            if self.error is not None:
                raise self.error
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop the encoder and delete the partial file (Ctrl-C, an error upstream): nothing looks finished."""
        if self._thread is not None and self._thread.is_alive():
            self.error = self.error or InputError("aborted", self.path)
            try:
                while True:
                    self.queue.get_nowait()
            except queue.Empty:
                pass
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                pass
            self._thread.join(timeout=30)
        self._discard()

    def _discard(self) -> None:
        for c in (self.out, self.src):
            try:
                if c is not None:
                    c.close()
            except Exception:  # noqa: BLE001 - already failing; the partial file is deleted next
                pass
        self.out = self.src = None
        self.tmp.unlink(missing_ok=True)

    # -- encoder thread ----------------------------------------------------------------------------------
    def _run(self, shape: tuple[int, ...]) -> None:
        try:
            self._encode_all(shape)
        except BaseException as exc:  # raised in the main thread by the next write/close
            self.error = self.error or exc

    def _open_stream(self, shape: tuple[int, ...]):
        h, w = int(shape[0]), int(shape[1])
        if self.pix_fmt == "yuv420p" and (h % 2 or w % 2):
            raise InputError(f"{self.codec} in yuv420p needs an even width and height, the frames are {w}x{h}",
                             self.path, "use --pix-fmt yuv444p, --codec ffv1, or a folder of PNG frames")
        s = self.out.add_stream(self.encoder, rate=self.rate, options=self.options)
        s.width, s.height, s.pix_fmt = w, h, self.pix_fmt
        s.time_base = self.time_base
        cc = s.codec_context
        cc.time_base = self.time_base
        cc.thread_type = "AUTO"
        tags = dict(self.color)
        if self.pix_fmt in ("gbrp", "bgr0"):
            tags["colorspace"], tags["color_range"] = 0, 2  # RGB: identity matrix, full range
        for k, v in tags.items():
            setattr(cc, k, v)
        return s, tags

    def _encode_all(self, shape: tuple[int, ...]) -> None:
        import av

        stream, tags = self._open_stream(shape)
        side = self._side_packets()
        pending = next(side, None)
        index = 0
        dst_cs = tags["colorspace"] if tags["colorspace"] in (1, 4, 5, 6, 7, 9, 10) else None
        while True:
            item = self.queue.get()
            t0 = time.perf_counter()
            if item is None or (self.error is not None):
                break
            img, ft = item
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            if self.pix_fmt not in ("gbrp", "bgr0"):
                frame = frame.reformat(format=self.pix_fmt, dst_colorspace=dst_cs,
                                       dst_color_range=tags["color_range"] or None, interpolation=SWS_FLAGS)
            else:
                frame = frame.reformat(format=self.pix_fmt, interpolation=SWS_FLAGS)
            if ft is not None and ft.pts is not None:
                frame.pts, frame.duration = ft.pts, ft.duration
            else:
                step = max(1, round(1 / (self.rate * self.time_base)))
                frame.pts, frame.duration = index * step, step
            frame.time_base = self.time_base
            for pkt in stream.encode(frame):
                self.out.mux(pkt)
                pending = self._mux_side_until(side, pending, pkt)
            index += 1
            self.frames = index
            self.encode_seconds += time.perf_counter() - t0
        if self.error is not None:
            return
        t0 = time.perf_counter()
        for pkt in stream.encode(None):
            self.out.mux(pkt)
        while pending is not None:  # the rest of the audio/subtitles (all of it that outlasts the video)
            self.out.mux(pending)
            pending = next(side, None)
        self.out.close()
        self.out = None
        if self.src is not None:
            self.src.close()
            self.src = None
        self.encode_seconds += time.perf_counter() - t0

    def _side_packets(self):
        """The input's audio/subtitle packets in file order, retargeted to their output streams."""
        if not self.side:
            return iter(())
        streams = {i: o for i, o in self.side}

        def gen():
            for pkt in self.src.demux([self.src.streams[i] for i in streams]):
                if pkt.dts is None and pkt.pts is None:
                    continue  # the demuxer's end-of-stream marker
                pkt.stream = streams[pkt.stream.index]
                yield pkt

        return gen()

    def _mux_side_until(self, side, pending, video_pkt):
        """Interleave: copy side packets up to the time of the video packet just written (bounded memory)."""
        t = (video_pkt.dts if video_pkt.dts is not None else video_pkt.pts) * video_pkt.time_base
        while pending is not None:
            ts = pending.dts if pending.dts is not None else pending.pts
            if ts * pending.time_base > t:
                break
            self.out.mux(pending)
            pending = next(side, None)
        return pending
