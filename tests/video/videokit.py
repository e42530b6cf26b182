"""Test videos made with PyAV itself: smooth natural-looking content, optional AAC audio, subtitles,
variable frame rate, rotation, 10-bit; plus packet/timestamp readers used to check round trips.

Imported by the video tests through conftest, which puts this folder on sys.path.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


def smooth_frame(i: int, h: int = 64, w: int = 96) -> np.ndarray:
    """uint8 BGR: soft gradients and blurred moving blobs (compressible like real footage, unlike noise)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = []
    for k in range(3):
        base = 110 + 60 * np.sin((x + 1.5 * i) / (19.0 + 4 * k)) * np.cos((y - 0.7 * i) / (23.0 - 3 * k))
        cx, cy = (w * (0.3 + 0.02 * k) + 2 * i) % w, h * (0.5 + 0.2 * np.sin(i / 9.0 + k))
        blob = 70 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (0.12 * w) ** 2))
        chans.append(base + blob)
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


def make_video(path: Path, n: int = 12, h: int = 64, w: int = 96, *, encoder: str = "libx264", rate: int = 24,
               pix_fmt: str = "yuv420p", audio: bool = False, subtitles: bool = False, pts: list[int] | None = None,
               time_base: Fraction | None = None, rotation: int = 0, colorspace: int | None = None,
               options: dict | None = None, container_options: dict | None = None) -> list[np.ndarray]:
    """Write `n` smooth frames (returned, BGR) to `path`; `pts` in `time_base` make it variable-rate."""
    frames = [smooth_frame(i, h, w) for i in range(n)]
    with av.open(str(path), "w", options=container_options or {}) as c:
        v = c.add_stream(encoder, rate=rate, options=options or {})
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        if time_base is not None:
            v.time_base = v.codec_context.time_base = time_base
        if rotation:
            v.set_display_rotation(rotation)
        if colorspace is not None:
            cc = v.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = colorspace, colorspace, colorspace, 1
        a = c.add_stream("aac", rate=48000) if audio else None
        s = c.add_mux_stream("subrip") if subtitles else None
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f = f.reformat(format=pix_fmt, dst_colorspace=colorspace, dst_color_range=1 if colorspace else None)
            if pts is not None:
                f.pts, f.time_base = pts[i], time_base
            for p in v.encode(f):
                c.mux(p)
        for p in v.encode(None):
            c.mux(p)
        if a is not None:  # a 440 Hz tone as long as the video
            t, total = 0, int(48000 * n / rate)
            while t < total:
                s_ = (0.2 * np.sin(2 * np.pi * 440 * np.arange(t, t + 1024) / 48000)).astype(np.float32)[None]
                af = av.AudioFrame.from_ndarray(s_, format="fltp", layout="mono")
                af.sample_rate, af.pts = 48000, t
                t += 1024
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode(None):
                c.mux(p)
        if s is not None:
            for k, text in enumerate([b"first line", b"second line"]):
                pk = av.Packet(text)
                pk.stream, pk.time_base = s, Fraction(1, 1000)
                pk.pts = pk.dts = 100 + 200 * k
                pk.duration = 150
                c.mux(pk)
    return frames


def packets(path: Path, kind: str) -> list[tuple[int | None, bytes]]:
    """(pts in seconds x 1e6, payload) of every packet of the first `kind` stream, in file order."""
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return [(None if p.pts is None else round(float(p.pts * p.time_base) * 1e6), bytes(p))
                for p in c.demux(s) if p.size]


def frame_times(path: Path) -> list[float]:
    """Presentation time (s) of every decoded video frame."""
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


def duration(path: Path) -> float:
    """End of the video stream: last frame's time plus its duration (s)."""
    with av.open(str(path)) as c:
        fr = list(c.decode(video=0))
    last = fr[-1]
    return float((last.pts + (last.duration or 0)) * last.time_base)


def y_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of the BT.601 luma of two uint8 BGR frames, as `edvr_fast.metrics` measures it."""
    from edvr_fast.metrics import psnr, to_tensor

    return float(psnr(to_tensor(a), to_tensor(b), y_channel=True))


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A tiny x1 EDVR (HR input, features at 1/4 size: fast) saved in our checkpoint format."""
    from edvr_fast.models import build

    model = build("edvr-m-sr4", num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1,
                  num_reconstruct_block=1, scale=1, hr_in=True)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * 0.02)
    torch.save({"format": "edvr_fast", "model_params": model.params.to_dict(), "model": model.state_dict()}, path)
    return path
