"""PSNR/SSIM against values computed by hand and by a plain-loop reference written independently here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edvr_fast.errors import InputError
from edvr_fast.metrics import PSNR_CAP, psnr, psnr_uint8, quantize, rgb_to_y, ssim, ssim_uint8, to_tensor


def _loop_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two single-channel 0-255 float images with plain Python loops (valid windows only)."""
    size, sigma = 11, 1.5
    g = [math.exp(-((i - 5) ** 2) / (2 * sigma * sigma)) for i in range(size)]
    s = sum(g)
    win = [[g[i] * g[j] / (s * s) for j in range(size)] for i in range(size)]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    h, w = a.shape
    vals = []
    for y in range(h - size + 1):
        for x in range(w - size + 1):
            ma = mb = saa = sbb = sab = 0.0
            for i in range(size):
                for j in range(size):
                    k = win[i][j]
                    pa, pb = float(a[y + i, x + j]), float(b[y + i, x + j])
                    ma += k * pa
                    mb += k * pb
                    saa += k * pa * pa
                    sbb += k * pb * pb
                    sab += k * pa * pb
            va, vb, cov = saa - ma * ma, sbb - mb * mb, sab - ma * mb
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    return sum(vals) / len(vals)


def test_psnr_hand_computed():
    gt = torch.zeros(1, 3, 2, 2)
    pred = gt.clone()
    pred[0, 0, 0, 0] = 0.5  # one of 12 values off by 0.5: MSE = 0.25 / 12
    expected = 10 * math.log10(1 / (0.25 / 12))
    assert psnr(pred, gt).item() == pytest.approx(expected, abs=1e-5)
    assert psnr(pred * 255, gt * 255, max_val=255.0).item() == pytest.approx(expected, abs=1e-5)


def test_psnr_batch_shape_and_single_image():
    torch.manual_seed(0)
    gt = torch.rand(4, 3, 8, 9)
    pred = (gt + 0.05 * torch.randn_like(gt)).clamp(0, 1)
    out = psnr(pred, gt)
    assert out.shape == (4,)
    for i in range(4):
        mse = float(((pred[i].double() - gt[i].double()) ** 2).mean())
        assert out[i].item() == pytest.approx(10 * math.log10(1 / mse), abs=1e-4)
        assert psnr(pred[i], gt[i]).dim() == 0
        assert psnr(pred[i], gt[i]).item() == pytest.approx(out[i].item(), abs=1e-6)


def test_psnr_identical_is_capped_not_inf():
    x = torch.rand(2, 3, 5, 5)
    assert torch.equal(psnr(x, x), torch.full((2,), PSNR_CAP))


def test_crop_border_ignores_edges():
    gt = torch.full((1, 3, 10, 10), 0.5)
    pred = gt.clone()
    pred[..., 0, :] = 1.0  # damage only the top row
    pred[..., :, -2:] = 0.0  # and the two right columns
    assert psnr(pred, gt, crop_border=2).item() == PSNR_CAP
    assert psnr(pred, gt, crop_border=1).item() < PSNR_CAP  # column 8 is still inside


def test_y_channel_bt601_matlab_values():
    # MATLAB rgb2ycbcr: white -> 235, black -> 16, pure red -> 16 + 65.481 = 81.481.
    img = torch.zeros(3, 1, 3)
    img[:, 0, 0] = 1.0
    img[0, 0, 2] = 1.0
    y = rgb_to_y(img) * 255
    assert y.shape == (1, 1, 3)
    assert y[0, 0].tolist() == pytest.approx([235.0, 16.0, 81.481], abs=1e-4)


def test_psnr_y_channel_hand_computed():
    gt = torch.zeros(1, 3, 4, 4)
    pred = gt.clone()
    pred[:, 1] = 0.1  # green only: Y differs by 128.553 * 0.1 / 255 everywhere
    d = 12.8553 / 255
    assert psnr(pred, gt, y_channel=True).item() == pytest.approx(10 * math.log10(1 / d**2), abs=1e-4)
    # On RGB only one channel of three differs.
    assert psnr(pred, gt).item() == pytest.approx(10 * math.log10(1 / (0.01 / 3)), abs=1e-4)


def test_ssim_constant_images_hand_computed():
    # Flat images: every variance and covariance is 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1) on 0-255.
    a, b = 100.0, 120.0
    c1 = (0.01 * 255) ** 2
    pred = torch.full((1, 3, 12, 12), a / 255)
    gt = torch.full((1, 3, 12, 12), b / 255)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert ssim(pred, gt).item() == pytest.approx(expected, abs=1e-6)
    assert ssim(gt, gt).item() == pytest.approx(1.0, abs=1e-7)


def test_ssim_matches_plain_loop_reference():
    rng = np.random.default_rng(3)
    gt = rng.random((3, 13, 12))
    pred = np.clip(gt + 0.1 * rng.standard_normal(gt.shape), 0, 1)
    expected = np.mean([_loop_ssim(pred[c] * 255, gt[c] * 255) for c in range(3)])
    got = ssim(torch.from_numpy(pred).float().unsqueeze(0), torch.from_numpy(gt).float().unsqueeze(0))
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, abs=1e-5)
    assert 0.3 < expected < 0.99  # the case is neither trivial nor degenerate


def test_ssim_y_channel_matches_loop_on_luma():
    rng = np.random.default_rng(4)
    gt = rng.random((3, 12, 12))
    pred = np.clip(gt + 0.05 * rng.standard_normal(gt.shape), 0, 1)
    w = np.array([65.481, 128.553, 24.966]).reshape(3, 1, 1)
    expected = _loop_ssim((pred * w).sum(0) + 16, (gt * w).sum(0) + 16)
    got = ssim(torch.from_numpy(pred).float(), torch.from_numpy(gt).float(), y_channel=True)
    assert got.item() == pytest.approx(expected, abs=1e-5)


def test_metrics_stay_on_device_and_return_tensors():
    x = torch.rand(2, 3, 16, 16)
    y = torch.rand(2, 3, 16, 16)
    for fn in (psnr, ssim):
        out = fn(x, y, crop_border=1, y_channel=True)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device == x.device


def test_uint8_helpers_read_bgr():
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    pred = gt.copy()
    pred[..., 0] = 0  # blue channel in BGR order
    t_pred, t_gt = to_tensor(pred), to_tensor(gt)
    assert torch.equal(t_pred[0], t_gt[0]) and not torch.equal(t_pred[2], t_gt[2])  # index 2 is blue in RGB
    assert psnr_uint8(pred, gt) == pytest.approx(psnr(t_pred, t_gt).item(), abs=1e-6)
    assert ssim_uint8(pred, gt, y_channel=True) == pytest.approx(ssim(t_pred, t_gt, y_channel=True).item(), abs=1e-6)


def test_quantize_rounds_to_8_bit():
    x = torch.tensor([0.0, 0.5, 1.2, -0.1, 0.6 / 255])
    assert torch.allclose(quantize(x) * 255, torch.tensor([0.0, 128.0, 255.0, 0.0, 1.0]))


@pytest.mark.parametrize(
    "kwargs, pred_shape",
    [
        ({}, (1, 3, 8, 9)),  # shape mismatch
        ({"crop_border": 4}, (1, 3, 8, 8)),  # nothing left
        ({"y_channel": True}, (1, 1, 8, 8)),  # Y of a grey image
        ({"crop_border": -1}, (1, 3, 8, 8)),
    ],
)
def test_bad_arguments_raise_input_error(kwargs, pred_shape):
    gt = torch.rand(pred_shape[:-1] + (8,))
    with pytest.raises(InputError):
        psnr(torch.rand(pred_shape), gt, **kwargs)


def test_ssim_too_small_and_integer_inputs_raise():
    with pytest.raises(InputError, match="11x11"):
        ssim(torch.rand(1, 3, 10, 20), torch.rand(1, 3, 10, 20))
    with pytest.raises(InputError, match="float"):
        psnr(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 3, 4, 4, dtype=torch.uint8))
