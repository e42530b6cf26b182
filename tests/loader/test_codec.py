"""The C++ partial decoders of the fused loader: exact against cv2's whole-frame decode + crop (JPEG colour
4:2:0 and gray, PNG colour and gray, crops at every border, odd sizes), the banded PNG the pack writes (a
standard PNG for cv2, decoded band by band by us), fused batches equal the reference on jpg/png packs, the
C++ path is the one used when built with the libraries, the cv2 fallback, bad frames."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
import torch
from loaderkit import reference_batches

from edvr_fast import _C
from edvr_fast.data.dataset import DatasetParams
from edvr_fast.data.loader import CODECS, FusedClipLoader
from edvr_fast.data.meta import frame_key
from edvr_fast.data.sampler import SampleParams
from edvr_fast.errors import DatasetError

HAVE = set(getattr(_C, "loader_codecs", ()))
needs = {c: pytest.mark.skipif(c not in HAVE, reason=f"_C built without the {c} decoder") for c in ("jpeg", "png")}
SIZES = [(480, 640, 3), (67, 93, 3), (33, 17, 1), (121, 75, 1), (50, 41, 3), (1, 1, 3), (16, 16, 1)]


def _frame(rng: np.random.Generator, h: int, w: int, c: int) -> np.ndarray:
    small = rng.integers(0, 256, (max(h // 8, 1), max(w // 8, 1), c), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, c).astype(np.int16)
    img += rng.integers(-20, 21, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _crops(rng: np.random.Generator, h: int, w: int, n: int):
    """Random crops, a fifth pinned to each border in turn, plus the four corners and the whole frame."""
    yield 0, 0, h, w
    for k in range(n):
        ch, cw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        top = {0: 0, 2: h - ch}.get(k % 5, top)
        left = {1: 0, 3: w - cw}.get(k % 5, left)
        yield top, left, ch, cw
    for top, left in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)):
        yield top, left, 1, 1


@pytest.mark.parametrize("codec", [pytest.param("jpeg", marks=needs["jpeg"]), pytest.param("png", marks=needs["png"])])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_partial_decode_equals_cv2_full_decode(codec: str, size: tuple[int, int, int]) -> None:
    h, w, c = size
    rng = np.random.default_rng(hash(size) % 1000)
    img = _frame(rng, h, w, c)
    ext = {"jpeg": ".jpg", "png": ".png"}[codec]
    ok, buf = cv2.imencode(ext, img[:, :, 0] if c == 1 else img)  # cv2 defaults: JPEG colour is 4:2:0
    assert ok
    full = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(h, w, c)
    for top, left, ch, cw in _crops(rng, h, w, 60):
        got = _C.decode_crop(buf, codec, h, w, c, top, left, ch, cw)
        want = full[top : top + ch, left : left + cw]
        assert got.shape == want.shape and np.array_equal(got, want), (top, left, ch, cw)


@needs["jpeg"]
@pytest.mark.parametrize("quality", [75, 95, 100])
def test_jpeg_crops_exact_at_other_qualities_and_444(quality: int) -> None:
    rng = np.random.default_rng(quality)
    img = _frame(rng, 97, 130, 3)
    for params in (
        [cv2.IMWRITE_JPEG_QUALITY, quality],
        [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444],
    ):
        ok, buf = cv2.imencode(".jpg", img, params)
        full = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        for top, left, ch, cw in _crops(rng, 97, 130, 40):
            assert np.array_equal(
                _C.decode_crop(buf, "jpeg", 97, 130, 3, top, left, ch, cw), full[top : top + ch, left : left + cw]
            )


@needs["jpeg"]
def test_tight_jpeg_crop_needs_the_context_margin() -> None:
    """Why the decoder reads one iMCU of context: without it 4:2:0 upsampling at the crop edges differs."""
    rng = np.random.default_rng(5)
    img = _frame(rng, 96, 128, 3)
    buf = cv2.imencode(".jpg", img)[1]
    full = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    differs = 0
    for top, left, ch, cw in _crops(rng, 96, 128, 100):
        want = full[top : top + ch, left : left + cw]
        tight = _C.decode_crop(buf, "jpeg", 96, 128, 3, top, left, ch, cw, context=False)
        differs += not np.array_equal(tight, want)
        assert np.array_equal(_C.decode_crop(buf, "jpeg", 96, 128, 3, top, left, ch, cw), want)
    assert differs > 0


@needs["png"]
def test_png_rgba_drops_alpha_and_unsupported_pngs_are_named() -> None:
    rng = np.random.default_rng(7)
    bgra = _frame(rng, 20, 30, 4)
    got = _C.decode_crop(cv2.imencode(".png", bgra)[1], "png", 20, 30, 3, 3, 4, 10, 11)
    assert np.array_equal(got, bgra[3:13, 4:15, :3])
    deep = cv2.imencode(".png", rng.integers(0, 65535, (20, 30, 3), dtype=np.uint16))[1]
    with pytest.raises(ValueError, match="8-bit"):
        _C.decode_crop(deep, "png", 20, 30, 3, 0, 0, 5, 5)
    gray = cv2.imencode(".png", bgra[:, :, 0])[1]
    with pytest.raises(ValueError, match="expected 20x30x3"):
        _C.decode_crop(gray, "png", 20, 30, 3, 0, 0, 5, 5)


@needs["png"]
@pytest.mark.parametrize("band_rows", [16, 1, 7])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: "x".join(map(str, s)))
def test_banded_png_is_a_standard_png_and_crops_exactly(size: tuple[int, int, int], band_rows: int) -> None:
    h, w, c = size
    rng = np.random.default_rng(hash(size) % 1000 + band_rows)
    img = _frame(rng, h, w, c)
    buf = _C.encode_png_banded(img, band_rows=band_rows)
    assert buf[:8] == b"\x89PNG\r\n\x1a\n" and buf[37:41] == b"edBD"  # the band index right after IHDR
    # libpng (inside cv2) reads the whole file, checking every CRC and the zlib stream's Adler-32.
    assert np.array_equal(cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED).reshape(h, w, c), img)
    for top, left, ch, cw in _crops(rng, h, w, 40):
        got = _C.decode_crop(buf, "png", h, w, c, top, left, ch, cw)
        assert np.array_equal(got, img[top : top + ch, left : left + cw]), (top, left, ch, cw)


@needs["png"]
def test_banded_png_compresses_like_cv2_and_rejects_bad_arguments() -> None:
    img = _frame(np.random.default_rng(5), 480, 640, 3)
    ours = len(_C.encode_png_banded(img, level=3))
    theirs = len(cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])[1])
    assert ours < 1.05 * theirs, (ours, theirs)  # flushing every 16 rows must stay cheap
    with pytest.raises(ValueError, match="H x W x 1 or H x W x 3"):
        _C.encode_png_banded(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="band_rows"):
        _C.encode_png_banded(img, band_rows=0)


@needs["png"]
def test_damaged_banded_png_is_caught_per_band() -> None:
    img = _frame(np.random.default_rng(9), 64, 40, 3)
    buf = bytearray(_C.encode_png_banded(img, band_rows=16))
    idat = [m for m in range(len(buf) - 4) if buf[m : m + 4] == b"IDAT"]
    assert len(idat) == 4  # one IDAT chunk per band
    buf[idat[2] + 10] ^= 0x01  # inside band 2 (rows 32..47)
    with pytest.raises(ValueError, match="IDAT fails its CRC"):
        _C.decode_crop(bytes(buf), "png", 64, 40, 3, 30, 0, 5, 40)
    assert np.array_equal(_C.decode_crop(bytes(buf), "png", 64, 40, 3, 0, 0, 32, 40), img[:32])  # bands 0, 1 fine
    with pytest.raises(ValueError, match="ends early|truncated"):
        _C.decode_crop(bytes(buf[: idat[1] + 30]), "png", 64, 40, 3, 20, 0, 4, 40)


def test_pack_writes_banded_png_when_the_extension_can(png_pack: Path, plain_png_pack: Path) -> None:
    for path, banded in ((png_pack, "png" in HAVE), (plain_png_pack, False)):
        env = lmdb.open(str(path), subdir=True, readonly=True, lock=False)
        with env.begin() as txn:
            value = txn.get(frame_key("lq", 0, 0))
        env.close()
        assert value[:8] == b"\x89PNG\r\n\x1a\n" and (b"edBD" in value[:64]) == banded


@pytest.mark.parametrize("codec", [pytest.param("jpeg", marks=needs["jpeg"]), pytest.param("png", marks=needs["png"])])
def test_garbage_and_truncated_frames_raise(codec: str) -> None:
    img = _frame(np.random.default_rng(3), 40, 48, 3)
    buf = cv2.imencode({"jpeg": ".jpg", "png": ".png"}[codec], img)[1].tobytes()
    for bad in (b"\x00" * 17, buf[: len(buf) // 3], buf[:4]):
        with pytest.raises(ValueError):
            _C.decode_crop(bad, codec, 40, 48, 3, 30, 0, 10, 48)
    with pytest.raises(ValueError, match="expected 41x48x3"):
        _C.decode_crop(buf, codec, 41, 48, 3, 0, 0, 4, 4)
    with pytest.raises(ValueError, match="outside"):
        _C.decode_crop(buf, codec, 40, 48, 3, 38, 0, 4, 4)


def _params(path: Path, **kw) -> DatasetParams:
    base = dict(gt_size=8, random_reverse=True, interval_list=(1, 2), seed=3)
    base.update(kw)
    return DatasetParams(path, SampleParams(**base), split="all")


def _batches_equal(path: Path, epochs=(0, 1), **kw) -> FusedClipLoader:
    params = _params(path, **kw)
    with FusedClipLoader(params, 4, prefetch=2) as loader:
        for epoch in epochs:
            loader.set_epoch(epoch)
            got = [(lq.clone(), gt.clone()) for lq, gt in loader]
            want = reference_batches(params, 4, epoch)
            assert len(got) == len(want) > 0
            for (lq, gt), (rlq, rgt) in zip(got, want, strict=True):
                assert torch.equal(lq, rlq) and torch.equal(gt, rgt)
    return loader


@pytest.mark.parametrize("pack_name", ["jpg_pack", "gray_jpg_pack", "png_pack", "gray_png_pack", "plain_png_pack"])
@pytest.mark.parametrize("gt_size", [8, 14])
def test_fused_batches_equal_reference(pack_name: str, gt_size: int, request: pytest.FixtureRequest) -> None:
    _batches_equal(request.getfixturevalue(pack_name), gt_size=gt_size)


@pytest.mark.parametrize("pack_name,storage", [("jpg_pack", "jpg"), ("png_pack", "png"), ("raw_pack", "raw")])
def test_cpp_decoder_is_used_when_built_with_the_library(
    pack_name: str, storage: str, request: pytest.FixtureRequest
) -> None:
    with FusedClipLoader(_params(request.getfixturevalue(pack_name)), 2) as loader:
        codec = CODECS.get(storage)
        want = "raw" if codec is None else {"jpeg": "libjpeg-turbo", "png": "libpng"}[codec] if codec in HAVE else "cv2"
        assert loader.decode_backend == want
        assert type(loader._gather).__name__ == (
            "FrameDecoder" if want in ("libjpeg-turbo", "libpng") else "FrameGather"
        )
        assert (loader._decoder is None) == (want != "cv2")


def test_cv2_fallback_without_the_libraries(
    jpg_pack: Path, png_pack: Path, plain_png_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_C, "loader_codecs", (), raising=False)
    for path in (jpg_pack, png_pack, plain_png_pack):
        loader = _batches_equal(path, epochs=(0,))
        assert loader.decode_backend == "cv2"


@pytest.mark.parametrize("pack_name", ["jpg_pack", "png_pack", "plain_png_pack"])
def test_damaged_encoded_frame_names_the_frame(pack_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    src = request.getfixturevalue(pack_name)
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    env = lmdb.open(str(bad), subdir=True)
    with env.begin(write=True) as txn:
        for clip, n in ((0, 12), (1, 3), (2, 9)):
            for f in range(n):
                value = txn.get(frame_key("gt", clip, f))
                txn.put(frame_key("gt", clip, f), value[: len(value) // 2])  # truncated: header fine, data short
    env.close()
    with FusedClipLoader(_params(bad), 2) as loader, pytest.raises(DatasetError, match=r"\(gt\) of clip"):
        next(iter(loader))


@pytest.mark.parametrize("pack_name", ["jpg_pack", "png_pack"])
def test_fork_continues_the_stream_and_memory_stays_flat(pack_name: str, request: pytest.FixtureRequest) -> None:
    import multiprocessing as mp

    def rss_kib() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

    params = _params(request.getfixturevalue(pack_name))
    with FusedClipLoader(params, 2) as a, FusedClipLoader(params, 2, num_threads=1) as b:
        ia, ib = iter(a), iter(b)
        assert torch.equal(next(ia)[0], next(ib)[0])
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        proc = ctx.Process(target=lambda: q.put([(lq.numpy().copy(), gt.numpy().copy()) for lq, gt in ia]))
        proc.start()
        from_child = q.get(timeout=60)
        proc.join(timeout=60)
        assert proc.exitcode == 0
        rest = [(lq.clone(), gt.clone()) for lq, gt in ib]
        assert len(from_child) == len(rest) > 0
        for (lq, gt), (rlq, rgt) in zip(from_child, rest, strict=True):
            assert torch.equal(torch.from_numpy(lq), rlq) and torch.equal(torch.from_numpy(gt), rgt)
        start = None
        for epoch in range(150):
            a.set_epoch(epoch)
            for _ in a:
                pass
            if epoch == 20:
                start = rss_kib()
        grown = rss_kib() - start
    assert grown < 4096, f"RSS grew by {grown} KiB"
