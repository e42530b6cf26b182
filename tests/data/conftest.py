"""Fixtures for the data tests: the seed layout and a small lossless pack; helpers live in clipkit.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from clipkit import write_pair  # noqa: E402


@pytest.fixture
def seed_layout(tmp_path: Path) -> Path:
    """The motivating user's layout: input/ + gt/, 3 clips x 30 frames, 000000.jpg, small frames."""
    root = tmp_path / "src"
    for k in range(3):
        write_pair(root, f"clip{k:03d}", k, 30, 24, 32, fmt="{:06d}.jpg")
    return root


@pytest.fixture
def small_pack(tmp_path: Path) -> Path:
    """A raw pack of 3 PNG clips with different lengths, SR x2, lossless so pixels can be compared."""
    from edvr_fast.data.pack import pack

    root = tmp_path / "sr"
    write_pair(root, "a", 0, 12, 16, 20, scale=2)
    write_pair(root, "b", 1, 7, 16, 24, scale=2)
    write_pair(root, "c", 2, 9, 20, 20, scale=2)
    dst = tmp_path / "pack"
    pack(root, dst, progress=False, workers=2)
    return dst
