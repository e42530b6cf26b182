"""Image quality metrics the way the video-restoration field reports them: PSNR and SSIM, and the
temporal-consistency measure tOF (TecoGAN).

Owns the torch metrics (device-side, no host syncs; used by training and inference) and uint8 numpy helpers.

Conventions (match the MATLAB-derived code behind published EDVR/BasicSR numbers):

- Inputs are float tensors RGB in [0, 1], shape [B, C, H, W] or [C, H, W]; results are a Tensor[B]
  (a 0-d tensor for [C, H, W] input) on the inputs' device, never Python floats.
- ``crop_border`` removes that many pixels from every side before measuring (SR papers crop ``scale``).
- ``y_channel=True`` measures only the luma of ITU-R BT.601 as MATLAB's ``rgb2ycbcr`` computes it:
  ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for R, G, B in [0, 1]; Y is then on the 0-255 scale
  (range 16-235) and is divided by 255 again so PSNR's ``max_val`` stays 1.
- SSIM uses the standard Gaussian window (11x11, sigma 1.5), valid (unpadded) filtering, and the
  constants C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2 on the 0-255 scale, averaged over channels.
- Values are not rounded to uint8 first: callers that want the "saved PNG" number quantise themselves
  (``quantize``) before measuring.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edvr_fast.errors import InputError

__all__ = ["psnr", "ssim", "rgb_to_y", "quantize", "to_tensor", "psnr_uint8", "ssim_uint8", "PSNR_CAP", "tof_gray",
           "tof_crop"]

# PSNR of identical images is infinite; report a finite cap so means over frames stay meaningful.
PSNR_CAP = 100.0

_Y_WEIGHTS = (65.481, 128.553, 24.966)
_SSIM_SIZE = 11
_SSIM_SIGMA = 1.5
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2


def _check_pair(pred: torch.Tensor, gt: torch.Tensor, crop_border: int, y_channel: bool) -> tuple[bool, int]:
    if not isinstance(pred, torch.Tensor) or not isinstance(gt, torch.Tensor):
        raise InputError("pred and gt must be torch tensors (use to_tensor() for uint8 numpy frames)")
    if pred.shape != gt.shape:
        raise InputError(f"pred and gt shapes differ: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    if pred.dim() not in (3, 4):
        raise InputError(f"expected [B,C,H,W] or [C,H,W], got shape {tuple(pred.shape)}")
    if not pred.is_floating_point() or not gt.is_floating_point():
        raise InputError(f"expected float tensors in [0,1], got {pred.dtype} and {gt.dtype}")
    if crop_border < 0:
        raise InputError(f"crop_border must be >= 0, got {crop_border}")
    channels = pred.shape[-3]
    if y_channel and channels != 3:
        raise InputError(f"y_channel needs 3 RGB channels, got {channels}")
    h, w = pred.shape[-2:]
    if h <= 2 * crop_border or w <= 2 * crop_border:
        raise InputError(f"crop_border {crop_border} leaves nothing of a {h}x{w} image")
    return pred.dim() == 3, channels


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """BT.601 luma as MATLAB's rgb2ycbcr, of RGB in [0,1] ([..., 3, H, W]), returned in [0,1] ([..., 1, H, W])."""
    w = torch.tensor(_Y_WEIGHTS, dtype=img.dtype, device=img.device).view(3, 1, 1)
    y = (img * w).sum(dim=-3, keepdim=True) + 16.0
    return y / 255.0


def _prepare(pred: torch.Tensor, gt: torch.Tensor, crop_border: int, y_channel: bool):
    single, _ = _check_pair(pred, gt, crop_border, y_channel)
    if single:
        pred, gt = pred.unsqueeze(0), gt.unsqueeze(0)
    # Metrics in float64: PSNR of near-identical bf16/fp32 outputs needs the precision, and the cost is tiny.
    pred, gt = pred.double(), gt.double()
    if crop_border:
        c = crop_border
        pred, gt = pred[..., c:-c, c:-c], gt[..., c:-c, c:-c]
    if y_channel:
        pred, gt = rgb_to_y(pred), rgb_to_y(gt)
    return single, pred, gt


def psnr(
    pred: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = False, max_val: float = 1.0
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: Tensor[B] (0-d for [C,H,W] input), capped at PSNR_CAP."""
    single, p, g = _prepare(pred, gt, crop_border, y_channel)
    mse = (p - g).pow(2).flatten(1).mean(dim=1)
    # clamp_min instead of an `if mse == 0` branch keeps this free of host syncs.
    out = (10.0 * torch.log10(max_val**2 / mse.clamp_min(1e-30))).clamp_max(PSNR_CAP).to(torch.float32)
    return out[0] if single else out


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coords = torch.arange(_SSIM_SIZE, dtype=dtype, device=device) - (_SSIM_SIZE - 1) / 2
    g = torch.exp(-(coords**2) / (2 * _SSIM_SIGMA**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(pred: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Structural similarity per image (mean over channels and valid window positions): Tensor[B]."""
    single, p, g = _prepare(pred, gt, crop_border, y_channel)
    h, w = p.shape[-2:]
    if h < _SSIM_SIZE or w < _SSIM_SIZE:
        raise InputError(f"SSIM needs at least {_SSIM_SIZE}x{_SSIM_SIZE} pixels after cropping, got {h}x{w}")
    p, g = p * 255.0, g * 255.0
    b, c = p.shape[:2]
    win = _gaussian_window(p.dtype, p.device).expand(c, 1, _SSIM_SIZE, _SSIM_SIZE)

    def filt(x: torch.Tensor) -> torch.Tensor:
        # Depthwise, unpadded: only windows fully inside the image count, as in the reference MATLAB code.
        return F.conv2d(x, win, groups=c)

    mu_p, mu_g = filt(p), filt(g)
    var_p = filt(p * p) - mu_p**2
    var_g = filt(g * g) - mu_g**2
    cov = filt(p * g) - mu_p * mu_g
    num = (2 * mu_p * mu_g + _C1) * (2 * cov + _C2)
    den = (mu_p**2 + mu_g**2 + _C1) * (var_p + var_g + _C2)
    out = (num / den).reshape(b, -1).mean(dim=1).to(torch.float32)
    return out[0] if single else out


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Round a [0,1] float image to the 8-bit grid it would have once saved as PNG (stays float in [0,1])."""
    return (img.clamp(0, 1) * 255.0).round() / 255.0


def to_tensor(frame: np.ndarray, *, bgr: bool = True) -> torch.Tensor:
    """uint8 HWC frame (BGR as cv2 reads it, unless ``bgr=False``) -> float [3,H,W] RGB in [0,1]."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"expected a uint8 HxWx3 frame, got {desc}")
    if bgr:
        frame = frame[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float() / 255.0


def psnr_uint8(pred: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """PSNR of two uint8 BGR HxWx3 frames (as read by cv2), in dB."""
    return float(psnr(to_tensor(pred), to_tensor(gt), crop_border=crop_border, y_channel=y_channel))


def ssim_uint8(pred: np.ndarray, gt: np.ndarray, *, crop_border: int = 0, y_channel: bool = False) -> float:
    """SSIM of two uint8 BGR HxWx3 frames (as read by cv2)."""
    return float(ssim(to_tensor(pred), to_tensor(gt), crop_border=crop_border, y_channel=y_channel))


# Farneback parameters of TecoGAN's tOF: pyr_scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, sigma 1.2.
_FARNEBACK = (None, 0.5, 3, 15, 3, 5, 1.2, 0)


def tof_crop(h: int, w: int) -> tuple[slice, slice]:
    """TecoGAN's central crop before tOF: the largest multiple of 32 leaving >= 16 pixels off each axis;
    frames too small for that (under 48 px) are used whole."""
    def axis(n: int) -> slice:
        m = (n // 32) * 32
        while m > n - 16:
            m -= 32
        if m <= 0:
            return slice(0, n)
        o = (n - m) // 2
        return slice(o, o + m)

    return axis(h), axis(w)


def tof_gray(prev_pred: np.ndarray, pred: np.ndarray, prev_gt: np.ndarray, gt: np.ndarray) -> float:
    """tOF of one frame pair (TecoGAN): mean over pixels of the Euclidean norm of the difference between
    the Farneback optical flow prev_pred -> pred and that of prev_gt -> gt. Inputs: uint8 gray HxW frames
    (BT.601 luma as cv2's RGB2GRAY computes it); lower is more temporally consistent, 0 for identical clips."""
    f_pred = cv2.calcOpticalFlowFarneback(prev_pred, pred, *_FARNEBACK)
    f_gt = cv2.calcOpticalFlowFarneback(prev_gt, gt, *_FARNEBACK)
    ys, xs = tof_crop(*pred.shape[:2])
    d = (f_pred - f_gt)[ys, xs]
    return float(np.sqrt((d * d).sum(-1)).mean())
