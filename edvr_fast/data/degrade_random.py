"""Realistic random degradations made at sample time from the GT window (the `data.degrade` config section).

Owns `DegradeParams` (probabilities and ranges), the decision drawn for one sample and applying it to a window.

One decision per sample, the same for every frame of its window, drawn by `SamplePlan.degradation` from
`np.random.default_rng([seed, epoch, index, 2]).random(16)` (a stream of its own: the sampling contract's
stream 0 and the shuffle's stream 1 are untouched). Whatever the flags, exactly 16 doubles are drawn:
  u0 blur (< blur_prob), u1 kernel size (floor(u * len(blur_sizes))), u2 sigma x, u3 anisotropic
  (< blur_aniso_prob), u4 sigma y, u5 angle (u * pi), u6 downscale interpolation (floor(u * len(resize_modes))),
  u7 Gaussian noise (< gaussian_prob), u8 its sigma, u9 Poisson noise (< poisson_prob), u10 its peak,
  u11 JPEG (< jpeg_prob), u12 its quality, u13 video (< video_prob), u14 codec, u15 CRF.
A range (lo, hi) maps u to lo + u * (hi - lo); integer ranges (quality, CRF) to lo + floor(u * (hi - lo + 1)).
The noise values themselves come from `default_rng([seed, epoch, index, 3])`, frame after frame in window
order (noise differs between frames, as a sensor's does; its strength is the sample's decision).
Order on the cropped GT window (uint8 HWC BGR frames): blur at GT size (reflect-101 border; cv2.sepFilter2D
for isotropic kernels, cv2.filter2D for anisotropic ones),
downscale by the pack's scale (cv2 INTER_AREA / INTER_LINEAR / INTER_CUBIC), Gaussian noise (sigma in 8-bit
levels), Poisson noise (photon count = value / 255 * peak), rounding to uint8, JPEG of each frame (cv2), then
H.264 / H.265 of the whole window at the CRF (PyAV, yuv420p, preset veryfast, one encoder thread).
Reproducibility: the decision is a pure function of (seed, epoch, index), and every step but the video one
is bit-identical on any thread or worker count (tested). The video step is not bit-reproducible here, as
measured: libx264 round trips of the same window (threads=1, no container, our own colour conversion)
came back different in ~1-2% of runs, more often on pool threads and in long-running processes (cause not
found; it is not concurrency between encodes, which we serialised, nor a freed-buffer read, which we
fixed). libx265 differs more often (some sizes on every run; PyAV 18.1's bundled x265, pools=none,
frame-threads=1) and is not in the default `video_codecs`. With video_prob > 0 a few LQ windows may
therefore differ between otherwise identical runs; set video_prob: 0 where bit-exact replays matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from edvr_fast.errors import ConfigError, InputError

RESIZE_MODES = ("area", "bilinear", "bicubic")  # cv2 INTER_AREA, INTER_LINEAR, INTER_CUBIC (cv2 loads lazily)
VIDEO_CODECS = ("libx264", "libx265")
NUM_DRAWS = 16
VIDEO_PRESET = "veryfast"  # x264/x265 speed preset: 3x cheaper than "medium" on 64x64 windows, a common real one
@dataclass
class DegradeParams:
    """The `data.degrade` section: off by default; each step has a probability and a range."""

    enabled: bool = False
    blur_prob: float = 0.5
    blur_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)  # odd kernel sides, GT pixels
    blur_sigma: tuple[float, float] = (0.2, 3.0)  # GT pixels
    blur_aniso_prob: float = 0.5  # of the blurred samples: a second sigma and a random angle
    resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")
    gaussian_prob: float = 0.5
    gaussian_sigma: tuple[float, float] = (1.0, 10.0)  # 8-bit levels
    poisson_prob: float = 0.2
    poisson_peak: tuple[float, float] = (50.0, 1000.0)  # photons at white
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)
    video_prob: float = 0.3
    video_codecs: tuple[str, ...] = ("libx264",)  # libx265 too: see the module docstring on reproducibility
    video_crf: tuple[int, int] = (18, 32)

    def validate(self, prefix: str = "data.degrade.") -> None:
        """ConfigError naming the key (with `prefix`) of the first bad value."""

        def need(ok: bool, key: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"{prefix}{key}={getattr(self, key)!r}: {why}")

        for key in ("blur_prob", "blur_aniso_prob", "gaussian_prob", "poisson_prob", "jpeg_prob", "video_prob"):
            need(0.0 <= getattr(self, key) <= 1.0, key, "a probability must be in [0, 1]")
        need(len(self.blur_sizes) > 0 and all(k >= 3 and k % 2 == 1 for k in self.blur_sizes), "blur_sizes",
             "must be a non-empty list of odd sizes >= 3")
        for key, lo_min in (("blur_sigma", 0.0), ("gaussian_sigma", 0.0), ("poisson_peak", 0.0)):
            lo, hi = getattr(self, key)
            need(lo_min < lo <= hi if key != "gaussian_sigma" else 0.0 <= lo <= hi, key,
                 "must be [low, high] with 0 < low <= high" if key != "gaussian_sigma" else
                 "must be [low, high] with 0 <= low <= high")
        need(len(self.resize_modes) > 0 and all(m in RESIZE_MODES for m in self.resize_modes), "resize_modes",
             f"each must be one of {RESIZE_MODES}")
        q0, q1 = self.jpeg_quality
        need(1 <= q0 <= q1 <= 100, "jpeg_quality", "must be [low, high] with 1 <= low <= high <= 100")
        need(len(self.video_codecs) > 0 and all(c in VIDEO_CODECS for c in self.video_codecs), "video_codecs",
             f"each must be one of {VIDEO_CODECS}")
        c0, c1 = self.video_crf
        need(0 <= c0 <= c1 <= 51, "video_crf", "must be [low, high] with 0 <= low <= high <= 51")
        if self.enabled and self.video_prob > 0:
            try:
                import av  # noqa: F401
            except ImportError as exc:
                raise ConfigError(f"{prefix}video_prob={self.video_prob}: video compression needs PyAV ({exc})",
                                  hint="pip install av, or set video_prob: 0") from exc


@dataclass(frozen=True)
class Degradation:
    """What one sample gets: None / 0 for a step means skipped."""

    blur: tuple[int, float, float, float] | None  # (size, sigma_x, sigma_y, angle in radians)
    resize: str
    gaussian_sigma: float | None
    poisson_peak: float | None
    jpeg_quality: int | None
    video: tuple[str, int] | None  # (codec, crf)
    noise_seed: tuple[int, ...]


def _span(u: float, r: tuple[float, float]) -> float:
    return float(r[0] + u * (r[1] - r[0]))


def _ispan(u: float, r: tuple[int, int]) -> int:
    return int(r[0] + min(int(u * (r[1] - r[0] + 1)), r[1] - r[0]))


def draw(p: DegradeParams, u: np.ndarray, noise_seed: tuple[int, ...]) -> Degradation:
    """The decision for the 16 uniforms `u` (see the module docstring for which is which)."""
    if len(u) != NUM_DRAWS:
        raise InputError(f"draw needs {NUM_DRAWS} uniforms, got {len(u)}")
    blur = None
    if u[0] < p.blur_prob:
        size = p.blur_sizes[int(u[1] * len(p.blur_sizes))]
        sx = _span(u[2], p.blur_sigma)
        sy, angle = (_span(u[4], p.blur_sigma), float(u[5] * math.pi)) if u[3] < p.blur_aniso_prob else (sx, 0.0)
        blur = (int(size), sx, sy, angle)
    return Degradation(
        blur=blur,
        resize=p.resize_modes[int(u[6] * len(p.resize_modes))],
        gaussian_sigma=_span(u[8], p.gaussian_sigma) if u[7] < p.gaussian_prob else None,
        poisson_peak=_span(u[10], p.poisson_peak) if u[9] < p.poisson_prob else None,
        jpeg_quality=_ispan(u[12], p.jpeg_quality) if u[11] < p.jpeg_prob else None,
        video=(p.video_codecs[int(u[14] * len(p.video_codecs))], _ispan(u[15], p.video_crf))
        if u[13] < p.video_prob else None,
        noise_seed=tuple(int(v) for v in noise_seed),
    )


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """A size x size Gaussian, sigma_x along `angle` (radians) and sigma_y across it, summing to 1."""
    r = size // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    c, s = math.cos(angle), math.sin(angle)
    along, across = c * x + s * y, -s * x + c * y
    k = np.exp(-0.5 * ((along / sigma_x) ** 2 + (across / sigma_y) ** 2))
    return k / k.sum()


def _video_roundtrip(frames: list[np.ndarray], codec: str, crf: int) -> list[np.ndarray]:
    """Encode the window as one H.264/H.265 stream in memory and decode it back (same size and channels).

    Codec contexts only (no container, nothing depends on muxer timestamps); the colour conversion is
    OpenCV's BGR <-> I420 (BT.601), and every decoded plane is copied out while its frame is alive (PyAV's
    to_ndarray(format=...) returned a view of a converted frame freed on return).
    """
    import av
    import cv2

    h, w, ch = frames[0].shape
    # yuv420p needs even sides, x265 at least 16 (multiples of 16 here): replicate the last rows and
    # columns up to that, cut them off after decoding.
    align = 16 if codec == "libx265" else 2
    ph, pw = -(-h // align) * align, -(-w // align) * align
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = pw, ph, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 25), Fraction(25, 1)
    enc.thread_count = 1
    opts = {"crf": str(crf), "preset": VIDEO_PRESET}
    if codec == "libx265":
        opts["x265-params"] = "log-level=none:pools=none:frame-threads=1"
    else:
        opts["x264-params"] = "threads=1:lookahead-threads=1:sliced-threads=0"
    enc.options = opts
    packets = []
    for k, f in enumerate(frames):
        if (ph, pw) != (h, w):
            f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        if ch == 3:
            yuv = cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_BGR2YUV_I420)
        else:
            yuv = np.full((ph * 3 // 2, pw), 128, np.uint8)
            yuv[:ph] = f[:, :, 0]
        vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        vf.pts, vf.time_base = k, enc.time_base
        packets += enc.encode(vf)
    packets += enc.encode(None)
    dec = av.CodecContext.create("hevc" if codec == "libx265" else "h264", "r")
    dec.thread_count = 1
    decoded = []
    for pkt in [*packets, None]:
        for fr in dec.decode(pkt):
            if fr.format.name != "yuv420p" or (fr.height, fr.width) != (ph, pw):
                raise RuntimeError(f"{codec} round trip decoded {fr.format.name} {fr.width}x{fr.height}")
            yuv = np.array(fr.to_ndarray(), copy=True)  # planes stacked: (ph * 3 / 2, pw)
            out = cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420) if ch == 3 else yuv[:ph, :, None]
            decoded.append(np.ascontiguousarray(out[:h, :w]).reshape(h, w, ch))
    if len(decoded) != len(frames):
        raise RuntimeError(f"{codec} round trip returned {len(decoded)} of {len(frames)} frames")
    return decoded


def apply(window: np.ndarray, d: Degradation, scale: int) -> np.ndarray:
    """LQ window uint8 [T, H/scale, W/scale, C] from a GT window uint8 [T, H, W, C] (H, W multiples of scale)."""
    if window.dtype != np.uint8 or window.ndim != 4:
        raise InputError(f"apply expects a uint8 [T,H,W,C] window, got {window.dtype} {window.shape}")
    import cv2

    interp = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
    t, h, w, ch = window.shape
    if h % scale or w % scale:
        raise InputError(f"window {w}x{h} is not a multiple of the scale {scale}")
    oh, ow = h // scale, w // scale
    kernel = gaussian_kernel(*d.blur) if d.blur is not None else None
    iso = d.blur is not None and d.blur[1] == d.blur[2]
    k1 = kernel.sum(axis=0) if iso else None  # an isotropic Gaussian is the outer product of its marginals
    noise = np.random.default_rng(list(d.noise_seed))
    frames = []
    for f in window:
        x = np.ascontiguousarray(f)
        if iso:  # separable: two 1-D passes, ~40x cheaper than the 2-D filter at 21x21
            x = cv2.sepFilter2D(x, -1, k1, k1, borderType=cv2.BORDER_REFLECT_101).reshape(h, w, ch)
        elif kernel is not None:
            x = cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REFLECT_101).reshape(h, w, ch)
        if scale != 1:
            x = cv2.resize(x, (ow, oh), interpolation=interp[d.resize]).reshape(oh, ow, ch)
        if d.gaussian_sigma is not None or d.poisson_peak is not None:
            y = x.astype(np.float64)
            if d.gaussian_sigma is not None:
                y += noise.normal(0.0, d.gaussian_sigma, y.shape)
            if d.poisson_peak is not None:
                peak = d.poisson_peak
                y = noise.poisson(np.clip(y, 0, 255) / 255.0 * peak) / peak * 255.0
            x = np.clip(np.rint(y), 0, 255).astype(np.uint8)
        if d.jpeg_quality is not None:
            ok, buf = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, d.jpeg_quality])
            if not ok:
                raise RuntimeError("OpenCV failed to encode a JPEG")
            x = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(oh, ow, ch)
        frames.append(x)
    if d.video is not None:
        frames = _video_roundtrip(frames, *d.video)
    return np.stack(frames)
