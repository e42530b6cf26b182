"""The exact degradations against values worked out independently: MATLAB bicubic imresize and DUF's BD."""

from __future__ import annotations

import numpy as np
import pytest

from edvr_fast.data.degrade import (
    bicubic_contributions,
    cubic,
    degrade,
    duf_kernel,
    duf_weights_1d,
    modcrop,
    record,
)
from edvr_fast.errors import InputError


def test_cubic_kernel_is_keys_a_minus_half() -> None:
    # Keys at a = -0.5: k(0)=1, k(1)=k(2)=0, k(0.5)=0.5625, k(1.5)=-0.0625.
    np.testing.assert_allclose(cubic(np.array([0, 0.5, 1, 1.5, 2, 2.5, -0.5])),
                               [1, 0.5625, 0, -0.0625, 0, 0, 0.5625], atol=1e-15)


def test_bicubic_1d_weights_of_one_output_pixel() -> None:
    # x2 on 8 pixels, output pixel 1 (1-based) sits at x = 1 * 2 + 0.5 * (1 - 2) = 1.5; the kernel widened by 2
    # gives cubic(d / 2) / 2 for the distances d = 3.5 .. -3.5 of taps -2 .. 5, i.e. cubic at 1.75, 1.25, 0.75,
    # 0.25 = -3/128, -9/128, 29/128, 111/128 (exact), halved: weights in 1/256 are -3 -9 29 111 111 29 -9 -3
    # (they sum to 256, so normalising changes nothing). Taps -2, -1, 0 mirror (symmetric, edge repeated) to
    # 3, 2, 1 (1-based) = 2, 1, 0 (0-based).
    w, taps = bicubic_contributions(8, 2)
    np.testing.assert_allclose(w[0] * 256, [-3, -9, 29, 111, 111, 29, -9, -3], atol=1e-12)
    assert taps[0].tolist() == [2, 1, 0, 0, 1, 2, 3, 4]
    # Output pixel 2 at x = 3.5: taps 0 .. 7 (1-based), 0 mirrored to 1.
    np.testing.assert_allclose(w[1] * 256, [-3, -9, 29, 111, 111, 29, -9, -3], atol=1e-12)
    assert taps[1].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
    # x4: the kernel spans 16 input pixels; every output pixel's weights sum to 1.
    w4, _ = bicubic_contributions(32, 4)
    np.testing.assert_allclose(w4.sum(axis=1), 1, atol=1e-12)
    # ceil(16) + 2 = 18 taps at distances 8.5 .. -8.5; the two at +-8.5 (beyond the support of 8) are zero for
    # every output pixel and dropped.
    assert w4.shape == (8, 16)


def test_bicubic_hand_computed_4x4_with_uint8_between_the_passes() -> None:
    # On 4 pixels (x2) the mirrored weights collapse, in 1/256, to [140, 102, 26, -12] and its reverse.
    # H pass, column 0: (140*171 + 102*120 + 26*250 - 12*146) / 256 = 40928 / 256 = 159.875 -> 160.
    # MATLAB's imresizemex returns uint8 after the H pass: the rows are [160 161 73 151], [184 66 62 43].
    # W pass: out[0][1] = (-12*160 + 26*161 + 102*73 + 140*151) / 256 = 30952 / 256 = 120.906 -> 121
    # (without the intermediate rounding it would be 120.49 -> 120: the rounding between passes matters).
    img = np.array([[171, 206, 5, 206], [120, 131, 161, 73], [250, 13, 71, 98], [146, 104, 33, 11]], np.uint8)
    assert degrade(img, "bicubic", 2).tolist() == [[152, 121], [131, 46]]
    colour = np.stack([img, img.T, 255 - img], axis=-1)
    out = degrade(colour, "bicubic", 2)
    assert out.shape == (2, 2, 3) and out[:, :, 0].tolist() == [[152, 121], [131, 46]]


@pytest.mark.parametrize("method", ["bicubic", "bd"])
@pytest.mark.parametrize("scale", [2, 4])
def test_constant_image_stays_constant(method: str, scale: int) -> None:
    for v in (0, 1, 127, 254, 255):
        img = np.full((24, 36, 3), v, np.uint8)
        out = degrade(img, method, scale)
        assert out.shape == (24 // scale, 36 // scale, 3) and out.dtype == np.uint8
        assert (out == v).all()


def test_bd_kernel_sums_to_one_with_sigma_0_4_scale() -> None:
    for scale, radius in ((2, 3), (4, 6)):
        k = duf_kernel(scale)
        assert k.shape == (13, 13)
        assert k.sum() == pytest.approx(1.0, abs=1e-12)
        w = duf_weights_1d(scale)
        sigma = 0.4 * scale
        # Gaussian of sigma 0.4 * scale: neighbouring weights fall by exp(-(2k+1) / (2 sigma^2)).
        for j in range(radius):
            assert w[6 + j + 1] / w[6 + j] == pytest.approx(np.exp(-(2 * j + 1) / (2 * sigma**2)), rel=1e-12)
        # scipy's truncate=4 support: radius int(4 sigma + 0.5), zero outside it.
        assert (w[: 6 - radius] == 0).all() and (w[6 + radius + 1 :] == 0).all() and w[6 - radius] > 0
        np.testing.assert_allclose(k, k.T)


def _duf_reference(img: np.ndarray, scale: int) -> np.ndarray:
    """DUF's DownSample written out as its code does it: reflect pad 6 + 2s, VALID 2-D conv with stride s,
    drop 2 outputs on each side (direct 2-D sums, not separable passes)."""
    pad = 6 + 2 * scale
    x = np.pad(img.astype(np.float64), ((pad, pad), (pad, pad)), mode="reflect")  # reflect = edge not repeated
    k = duf_kernel(scale)
    n_out = [(s - 13) // scale + 1 for s in x.shape]
    out = np.empty(n_out)
    for i in range(n_out[0]):
        for j in range(n_out[1]):
            out[i, j] = (x[i * scale : i * scale + 13, j * scale : j * scale + 13] * k).sum()
    return np.clip(np.floor(out[2:-2, 2:-2] + 0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("scale", [2, 4])
def test_bd_equals_the_duf_code_path(scale: int) -> None:
    rng = np.random.default_rng(scale)
    img = rng.integers(0, 256, (8 * scale, 6 * scale), dtype=np.uint8)
    assert np.abs(degrade(img, "bd", scale).astype(int) - _duf_reference(img, scale)).max() == 0


@pytest.mark.parametrize("scale", [2, 4])
def test_bd_keeps_the_top_left_pixel_of_each_block(scale: int) -> None:
    # A single bright pixel at (r, c): the output at (r / s, c / s) is centred on it exactly when r and c are
    # multiples of s (the documented kept pixels), so it gets the kernel's centre weight there.
    centre = duf_weights_1d(scale)[6] ** 2
    for r, c in ((2 * scale, 3 * scale), (2 * scale + 1, 3 * scale)):
        img = np.zeros((8 * scale, 8 * scale), np.uint8)
        img[r, c] = 255
        out = degrade(img, "bd", scale).astype(np.float64)
        if r % scale == 0:
            assert out[r // scale, c // scale] == np.floor(255 * centre + 0.5)
            assert out.max() == out[r // scale, c // scale]
        else:
            assert out[r // scale, c // scale] < np.floor(255 * centre + 0.5)
    # Bicubic samples the block centre instead: the LQ of one bright block (away from the borders) is
    # symmetric around that block's output pixel.
    img = np.zeros((8 * scale, 8 * scale), np.uint8)
    img[3 * scale : 4 * scale, 3 * scale : 4 * scale] = 255
    bic = degrade(img, "bicubic", scale)
    assert bic[3, 3] == bic.max() and bic[2, 3] == bic[4, 3] and bic[3, 2] == bic[3, 4] > 0


def test_modcrop_cuts_bottom_and_right() -> None:
    img = np.arange(7 * 10 * 3, dtype=np.uint8).reshape(7, 10, 3)
    out = modcrop(img, 4)
    assert out.shape == (4, 8, 3) and np.array_equal(out, img[:4, :8])


def test_bad_input_is_an_error() -> None:
    with pytest.raises(InputError, match="multiple of the scale"):
        degrade(np.zeros((10, 8, 3), np.uint8), "bicubic", 4)
    with pytest.raises(InputError, match="one of"):
        degrade(np.zeros((8, 8, 3), np.uint8), "lanczos", 4)
    with pytest.raises(InputError, match="scale must be one of"):
        degrade(np.zeros((9, 9, 3), np.uint8), "bd", 3)
    with pytest.raises(InputError, match="uint8"):
        degrade(np.zeros((8, 8, 3), np.float32), "bd", 4)
    assert record("bd", 4)["sigma"] == pytest.approx(1.6) and record("bicubic", 2)["a"] == -0.5
