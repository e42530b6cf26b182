"""The benchmarks' exact degradations of GT frames into LQ frames: MATLAB bicubic `imresize` and DUF's "BD".

Owns their 1-D resampling matrices, the crop of GT to a multiple of the scale, and what meta.json records.

Both are separable: each is a matrix M (out x in) applied along H, then along W, in float64 on 0..255 values.

`bicubic` is MATLAB's `imresize(img, 1/scale, 'bicubic')` with antialiasing on (its default) for uint8 frames:
- kernel: Keys cubic, a = -0.5: (1.5|x|^3 - 2.5|x|^2 + 1) for |x| <= 1, (-0.5|x|^3 + 2.5|x|^2 - 4|x| + 2) for
  1 < |x| <= 2, else 0. Downscaling by s widens it: h(x) = cubic(x / s) / s, support 4 * s input pixels;
- output pixel u (1-based) sits at input coordinate x = u * s + 0.5 * (1 - s); the taps are
  floor(x - 2s) + 0 .. ceil(4s) + 1 with weights h(x - tap), divided by their sum (per output pixel);
- taps outside [1, n] are mirrored symmetrically (the edge pixel repeated: ... 2 1 | 1 2 ... n | n n-1 ...);
  taps of weight zero for every output pixel are dropped (they change nothing);
- MATLAB resizes the dimension of smaller scale first, rows first on a tie: H, then W. Its `imresizemex`
  returns the class of its input, so for uint8 frames the H pass is rounded to uint8 before the W pass;
  we do the same. Rounding is MATLAB's: half away from zero, saturated to 0..255.
The float64 sums are not in MATLAB's order; a result can differ from MATLAB's only where the exact sum lies
within ~1e-12 of a half level. Not OpenCV's INTER_CUBIC (a = -0.75, no widening: no antialiasing).

`bd` is the Gaussian blur + decimation of the DUF paper's code (TensorFlow `DownSample`, and its PyTorch ports
`duf_downsample` / `gaussian_downsample` in BasicSR and RRN), for scale 2 or 4:
- kernel: 13 x 13, the 2-D Gaussian of sigma 0.4 * scale that scipy's `gaussian_filter` makes from a centred
  delta (truncate 4): the outer product of the 1-D weights exp(-k^2 / (2 sigma^2)) for |k| <= int(4 sigma +
  0.5) (6 at x4, 3 at x2; zero outside), normalised to sum 1;
- padding: reflect without repeating the edge (TF/PyTorch 'REFLECT': ... 2 1 | 0 1 2 ... n-1 | n-2 ...) by
  6 + 2 * scale on every side, then a 'VALID' convolution with stride `scale`, then 2 outputs dropped on each
  side. Output k of the VALID convolution is centred on padded pixel 6 + k * scale, i.e. input pixel
  (k - 2) * scale; dropping two on each side leaves exactly n / scale outputs centred on input rows and columns
  0, scale, 2 * scale, ... (0-based): **the kept pixels are the top-left pixel of each scale x scale block**
  (not its centre, which bicubic samples: BD LQ is shifted by (scale - 1) / 2 GT pixels against bicubic LQ).
  Only the 6 pixels next to an edge are ever reflected, so any frame of at least 7 pixels per side works.
The ports compute in float32 on [0, 1] and save through a rounding to uint8; we compute in float64 and round
once, half away from zero (a float32 port can differ by one level where its error crosses a half).

GT sizes that are not a multiple of the scale are cropped at the bottom and the right (MATLAB `modcrop`: the
top-left pixel stays the origin of both frames), never padded.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from edvr_fast.errors import DatasetError, InputError

if TYPE_CHECKING:
    from edvr_fast.data.scan import ScanResult

METHODS = ("bicubic", "bd")
SCALES = (2, 4)
BD_KERNEL_SIZE = 13


def cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (MATLAB's `cubic`, a = -0.5)."""
    ax = np.abs(np.asarray(x, np.float64))
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (a + 2) * ax3 - (a + 3) * ax2 + 1
    outer = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return np.where(ax <= 1, inner, np.where(ax <= 2, outer, 0.0))


def bicubic_contributions(in_len: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(weights, taps) of MATLAB's antialiased bicubic downscale by `scale`: one row per output pixel.

    taps are 0-based input indices after the symmetric mirroring; columns of all-zero weight are dropped.
    """
    out_len = math.ceil(in_len / scale)
    width = 4.0 * scale
    x = np.arange(1, out_len + 1, dtype=np.float64) * scale + 0.5 * (1 - scale)
    left = np.floor(x - width / 2)
    taps = left[:, None] + np.arange(math.ceil(width) + 2)[None, :]  # 1-based, before mirroring
    weights = cubic((x[:, None] - taps) / scale) / scale
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])  # 0-based symmetric
    idx = mirror[np.mod(taps.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], idx[:, keep]


def duf_weights_1d(scale: int) -> np.ndarray:
    """The 13 1-D weights whose outer product is DUF's BD kernel (sigma 0.4 * scale, scipy truncate 4)."""
    sigma = 0.4 * scale
    radius = int(4.0 * sigma + 0.5)
    if radius > BD_KERNEL_SIZE // 2:
        raise InputError(f"bd: sigma {sigma} needs more than a {BD_KERNEL_SIZE}-tap kernel (scale {scale})")
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * k * k / (sigma * sigma))
    out = np.zeros(BD_KERNEL_SIZE)
    c = BD_KERNEL_SIZE // 2
    out[c - radius : c + radius + 1] = w / w.sum()
    return out


def duf_kernel(scale: int) -> np.ndarray:
    """DUF's 13 x 13 BD blur kernel for `scale` (sums to 1)."""
    w = duf_weights_1d(scale)
    return np.outer(w, w)


def _reflect101(i: np.ndarray, n: int) -> np.ndarray:
    i = np.abs(i)  # below 0: -i
    return np.where(i > n - 1, 2 * (n - 1) - i, i)


@functools.lru_cache(maxsize=64)
def resample_matrix(method: str, in_len: int, scale: int) -> np.ndarray:
    """Dense (out x in) float64 matrix of one 1-D pass of `method` (read-only; cached per length)."""
    if method == "bicubic":
        w, idx = bicubic_contributions(in_len, scale)
        m = np.zeros((w.shape[0], in_len))
        np.add.at(m, (np.repeat(np.arange(w.shape[0]), w.shape[1]), idx.ravel()), w.ravel())
    elif method == "bd":
        if in_len < BD_KERNEL_SIZE // 2 + 1:
            raise InputError(f"bd needs frames of at least {BD_KERNEL_SIZE // 2 + 1} pixels per side, got {in_len}")
        w = duf_weights_1d(scale)
        out_len = in_len // scale
        c = BD_KERNEL_SIZE // 2
        centres = np.arange(out_len) * scale
        taps = _reflect101(centres[:, None] + np.arange(-c, c + 1)[None, :], in_len)
        m = np.zeros((out_len, in_len))
        np.add.at(m, (np.repeat(np.arange(out_len), BD_KERNEL_SIZE), taps.ravel()), np.tile(w, out_len))
    else:
        raise InputError(f"degradation must be one of {METHODS}, got {method!r}")
    m.setflags(write=False)
    return m


def round_uint8(x: np.ndarray) -> np.ndarray:
    """MATLAB's double -> uint8: round half away from zero, saturate to 0..255."""
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """The frame cropped at the bottom and right to a multiple of `scale` (a view; never padded)."""
    h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
    return img[:h, :w]


def check_method(method: str, scale: int) -> None:
    if method not in METHODS:
        raise InputError(f"degradation must be one of {METHODS}, got {method!r}")
    if scale not in SCALES:
        raise InputError(f"degradation scale must be one of {SCALES} (the model's scales), got {scale}")


def degrade(img: np.ndarray, method: str, scale: int) -> np.ndarray:
    """LQ uint8 (H/scale, W/scale, C) of a uint8 HWC (or HW) GT frame whose sides are multiples of `scale`."""
    check_method(method, scale)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise InputError(f"degrade expects a uint8 HW or HWC frame, got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    if h % scale or w % scale:
        raise InputError(f"frame {w}x{h} is not a multiple of the scale {scale}: modcrop it first")
    if h < scale or w < scale:
        raise InputError(f"frame {w}x{h} is smaller than the scale {scale}")
    x = img.reshape(h, w, -1).astype(np.float64)
    mh, mw = resample_matrix(method, h, scale), resample_matrix(method, w, scale)
    c = x.shape[2]
    rows = (mh @ x.reshape(h, w * c)).reshape(-1, w, c)  # H pass (BLAS matrix products)
    if method == "bicubic":
        rows = round_uint8(rows).astype(np.float64)  # imresizemex returns uint8 after the H pass
    out = round_uint8(np.matmul(mw, rows))  # W pass: (ow x w) @ (w x c) for every output row
    return out.reshape(out.shape[:2] + img.shape[2:])


def record(method: str, scale: int) -> dict:
    """What meta.json's optional `degradation` field holds for a pack made with `method`."""
    from edvr_fast import __version__

    check_method(method, scale)
    common = {"name": method, "scale": scale, "edvr_fast_version": __version__,
              "gt_crop": "bottom/right to a multiple of scale", "compute": "float64", "rounding": "half away from 0"}
    if method == "bicubic":
        return {**common, "definition": "MATLAB imresize(img, 1/scale, 'bicubic'), antialiasing on",
                "kernel": "cubic", "a": -0.5, "kernel_width": 4 * scale, "border": "symmetric",
                "order": "H then W, uint8 between the passes"}
    return {**common, "definition": "DUF DownSample (Gaussian blur + decimation)",
            "kernel_size": BD_KERNEL_SIZE, "sigma": 0.4 * scale, "border": "reflect (edge not repeated)",
            "kept": "rows and columns 0, scale, 2*scale, ... (0-based): the top-left pixel of each block"}


def scan_gt_only(root: str | os.PathLike, method: str, scale: int, crop: int | None) -> ScanResult:
    """A GT-only tree as clips whose input side is the GT side too (the LQ is derived from it)."""
    from edvr_fast.data.scan import ClipSource, ScanResult, scan_frames

    try:
        check_method(method, scale)
    except InputError as exc:
        raise InputError(str(exc), hint="--degrade bicubic|bd --scale 2|4") from exc
    found = scan_frames(root)
    least = max(scale, crop or 0, BD_KERNEL_SIZE // 2 + 1 if method == "bd" else 0)
    chans = {c.lq.shape[2] for c in found.clips}
    if len(chans) != 1:
        raise DatasetError("gray and colour clips mixed", found.input_root, "convert all frames to one kind")
    for c in found.clips:
        h, w = (v - v % scale for v in c.lq.shape[:2])
        if min(h, w) < least:
            what = f"the training crop {crop}" if crop and least == crop else f"{least} pixels ({method} x{scale})"
            raise DatasetError(
                f"clip '{c.name}' GT frames are {c.lq.shape[1]}x{c.lq.shape[0]} ({w}x{h} after cropping to a "
                f"multiple of {scale}), smaller than {what}",
                c.lq.frames[0] if c.lq.frames else c.lq.path,
                "drop this clip, or lower --crop / the scale",
            )
    clips = [ClipSource(c.name, c.lq, c.lq) for c in found.clips]
    return ScanResult(clips, scale, found.input_root, found.input_root, found.skipped)


def degraded_shapes(gt: tuple[int, int, int], scale: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(LQ shape, GT shape after the bottom/right crop) of a GT-only clip of shape `gt`."""
    h, w, c = gt
    return (h // scale, w // scale, c), (h - h % scale, w - w % scale, c)


def frame_transforms(method: str, scale: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """What pack applies to each checked GT frame: "gt" the bottom/right crop, "lq" the crop then `method`."""

    def gt(img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(modcrop(img, scale))

    def lq(img: np.ndarray) -> np.ndarray:
        return degrade(np.ascontiguousarray(modcrop(img, scale)), method, scale)

    return {"gt": gt, "lq": lq}
