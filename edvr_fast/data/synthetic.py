"""The built-in default data set: a procedural generator of moving textured scenes (camera pan plus sprites),
rendered at a high sub-frame rate, blurred by averaging sub-frames (as REDS was made), downsampled for SR,
and, optionally, with sensor noise on the input frames (a real capture of the blurred frame is noisy; the
GT is the clean sharp sub-frame).

`ensure_dataset` renders and packs it once into a cache folder (atomic, safe against a killed attempt).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Bump when the rendering changes, so caches made by an older generator are not reused.
GENERATOR_VERSION = 2
CACHE_ENV = "EDVR_FAST_CACHE"
_GAMMA = 2.2


@dataclass(frozen=True)
class SyntheticParams:
    """What the generator renders. Sizes are GT pixels; input frames are (height / scale, width / scale).

    blur: sub-frames averaged into one input frame (1 = sharp input); the GT is the middle sub-frame.
    max_speed: largest camera / sprite motion in GT pixels per output frame.
    noise: standard deviation, in 8-bit levels, of the Gaussian sensor noise added to each input frame
    (independent per frame and pixel; 0 = none). The GT stays clean.
    """

    num_clips: int = 12
    num_frames: int = 16
    height: int = 64
    width: int = 64
    scale: int = 4
    blur: int = 5
    max_speed: float = 4.0
    sprites: int = 3
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.scale not in (1, 2, 4):
            raise ValueError(f"scale must be 1, 2 or 4, got {self.scale}")
        if self.height % self.scale or self.width % self.scale:
            raise ValueError(f"height and width must be multiples of scale {self.scale}")
        if min(self.num_clips, self.num_frames, self.height, self.width, self.blur) < 1:
            raise ValueError("num_clips, num_frames, height, width and blur must be >= 1")
        if not 0 <= self.noise <= 64:
            raise ValueError(f"noise must be in [0, 64] (8-bit levels), got {self.noise}")

    def key(self) -> str:
        """A short stable name for these parameters and this generator version (the cache folder name)."""
        fields = dataclasses.asdict(self)
        if not fields["noise"]:
            del fields["noise"]  # noise-free sets keep the names (and caches) they had before noise existed
        blob = json.dumps({"v": GENERATOR_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise: a coarse random grid upsampled with cubic interpolation, [h, w, 3] in [0, 1]."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    grid = rng.random((gh, gw, 3)).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth shading under sharp-edged shapes and a faint stripe pattern: piecewise-smooth content with
    edges at every orientation, what SR and deblurring restore (pure noise would be unlearnable)."""
    img = 0.3 + 0.4 * _smooth_noise(rng, h, w, 24)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(8, 20)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    img += 0.08 * np.sin(phase)[..., None]
    for _ in range(max(6, h * w // 300)):
        color = tuple(float(c) for c in rng.random(3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(3, max(4, min(h, w) // 6)))
        if rng.random() < 0.5:
            cv2.rectangle(img, (cx, cy), (cx + size, cy + int(rng.integers(3, size + 3))), color, -1)
        else:
            cv2.circle(img, (cx, cy), size, color, -1, lineType=cv2.LINE_AA)
    return np.clip(img, 0, 1)


def _shift(img: np.ndarray, dx: float, dy: float, w: int, h: int, outside: str = "reflect") -> np.ndarray:
    """img translated by (dx, dy) and cropped to w x h at the origin (sub-pixel, cubic); outside the image
    "reflect" mirrors it (the background canvas), "zero" leaves nothing (a sprite and its mask)."""
    m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    border = cv2.BORDER_REFLECT101 if outside == "reflect" else cv2.BORDER_CONSTANT
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=border, borderValue=0)


def render_clip(params: SyntheticParams, index: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(input frames, GT frames) of clip `index`: uint8 BGR HWC, deterministic in (params, index)."""
    p = params
    rng = np.random.default_rng([p.seed, index, GENERATOR_VERSION])
    h, w, sub = p.height, p.width, p.blur
    margin = int(np.ceil(p.max_speed * (p.num_frames + 1))) + 8
    canvas = _texture(rng, h + 2 * margin, w + 2 * margin)
    cam_v = rng.uniform(-1, 1, 2) * p.max_speed / sub  # per sub-frame
    sprites = []
    for _ in range(p.sprites):
        sh, sw = (int(rng.integers(h // 6 + 2, h // 2 + 3)) for _ in range(2))
        mask = np.zeros((sh, sw), np.float32)
        if rng.random() < 0.5:
            cv2.ellipse(mask, (sw // 2, sh // 2), (sw // 2 - 1, sh // 2 - 1), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
        else:
            mask[1:-1, 1:-1] = 1.0
        start = rng.uniform(0, 1, 2) * (w, h)
        vel = rng.uniform(-1, 1, 2) * p.max_speed / sub
        sprites.append((_texture(rng, sh, sw), mask, start, vel))

    def subframe(t: int) -> np.ndarray:
        cx, cy = -margin - cam_v[0] * t, -margin - cam_v[1] * t
        img = _shift(canvas, cx, cy, w, h)
        for tex, mask, start, vel in sprites:
            x, y = start + vel * t - (tex.shape[1] / 2, tex.shape[0] / 2)
            m = np.clip(_shift(mask, x, y, w, h, "zero"), 0, 1).reshape(h, w, 1)
            img = img * (1 - m) + _shift(tex, x, y, w, h, "zero") * m
        return np.clip(img, 0, 1)

    noise_rng = np.random.default_rng([p.seed, index, GENERATOR_VERSION, 1])
    lq, gt = [], []
    for f in range(p.num_frames):
        subs = [subframe(f * sub + s) for s in range(sub)]
        sharp = subs[sub // 2]
        # Averaging happens in linear light (as a sensor integrates), then back to display gamma.
        blurred = np.mean([s**_GAMMA for s in subs], axis=0) ** (1 / _GAMMA)
        if p.scale > 1:
            blurred = cv2.resize(blurred, (w // p.scale, h // p.scale), interpolation=cv2.INTER_AREA)
        observed = np.clip(blurred, 0, 1) * 255
        if p.noise > 0:  # its own stream, so that the scene does not change with the noise level
            observed = observed + noise_rng.normal(0.0, p.noise, observed.shape)
        gt.append(np.round(sharp * 255).astype(np.uint8))
        lq.append(np.round(np.clip(observed, 0, 255)).astype(np.uint8))
    return lq, gt


def clip_name(index: int) -> str:
    return f"scene_{index:03d}"


def write_frames(root: str | os.PathLike, params: SyntheticParams) -> Path:
    """Render every clip into `root/input/<clip>/NNNNNN.png` and `root/gt/<clip>/NNNNNN.png`."""
    root = Path(root)
    for c in range(params.num_clips):
        lq, gt = render_clip(params, c)
        for kind, frames in (("input", lq), ("gt", gt)):
            folder = root / kind / clip_name(c)
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(frames):
                if not cv2.imwrite(str(folder / f"{i:06d}.png"), img):
                    raise OSError(f"cannot write {folder / f'{i:06d}.png'}")
    return root


def cache_root() -> Path:
    """Where generated data sets live: $EDVR_FAST_CACHE, else ~/.cache/edvr_fast."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "edvr_fast"


def ensure_dataset(params: SyntheticParams, cache_dir: str | os.PathLike | None = None,
                   progress: bool = True) -> tuple[Path, Path]:
    """(pack folder, frames folder) of the data set, rendering and packing it on first use.

    Each step writes under a temporary name and renames when complete, and a file lock serialises
    concurrent callers (several runs or ranks sharing a cache), so a killed attempt is redone, never used.
    """
    from edvr_fast.data.pack import pack

    base = Path(cache_dir) if cache_dir is not None else cache_root() / "default_data"
    folder = base / params.key()
    frames, packed = folder / "frames", folder / "pack"
    if (packed / "meta.json").is_file() and frames.is_dir():
        return packed, frames
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not frames.is_dir():
            tmp = folder / "frames.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            write_frames(tmp, params)
            os.rename(tmp, frames)
        if not (packed / "meta.json").is_file():
            if packed.exists():
                shutil.rmtree(packed)  # a folder without meta.json is never a finished pack
            pack(frames, packed, progress=progress)
        (folder / "params.json").write_text(json.dumps(dataclasses.asdict(params), indent=1))
    return packed, frames
