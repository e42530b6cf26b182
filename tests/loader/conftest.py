"""Fixtures for the fused loader tests: small packs (raw, png, plain png, jpg, gray raw/png/jpg), reference batches.

Clip generators come from tests/data/clipkit.py, the reference batches from loaderkit.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "data"))
sys.path.insert(0, str(Path(__file__).parent))

from clipkit import write_pair  # noqa: E402


def _pack(tmp: Path, storage: str, c: int = 3) -> Path:
    from edvr_fast.data.pack import pack

    root = tmp / "src"
    # Different sizes and lengths, a clip shorter than the window: every boundary rule gets exercised.
    write_pair(root, "a", 0, 12, 16, 20, scale=2, c=c)
    write_pair(root, "b", 1, 3, 16, 24, scale=2, c=c)
    write_pair(root, "c", 2, 9, 20, 20, scale=2, c=c)
    dst = tmp / f"pack_{storage}_{c}"
    pack(root, dst, storage=storage, progress=False, workers=2)
    return dst


@pytest.fixture(scope="module")
def raw_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pack(tmp_path_factory.mktemp("raw"), "raw")


@pytest.fixture(scope="module")
def png_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pack(tmp_path_factory.mktemp("png"), "png")


@pytest.fixture(scope="module")
def plain_png_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PNG frames from cv2's encoder (what a pack gets without the extension): no band index, read by libpng."""
    from edvr_fast.data import pack

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pack, "_banded_png_encoder", lambda: None)
        return _pack(tmp_path_factory.mktemp("plain_png"), "png")


@pytest.fixture(scope="module")
def jpg_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pack(tmp_path_factory.mktemp("jpg"), "jpg")


@pytest.fixture(scope="module")
def gray_jpg_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pack(tmp_path_factory.mktemp("gray_jpg"), "jpg", c=1)


@pytest.fixture(scope="module")
def gray_png_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pack(tmp_path_factory.mktemp("gray_png"), "png", c=1)


@pytest.fixture(scope="module")
def gray_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pack(tmp_path_factory.mktemp("gray"), "raw", c=1)
