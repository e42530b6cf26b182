"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) from real packed frames.

Packs two tiny clips (colour and gray) with `edvr_fast.data.pack` in every storage, takes their stored
values out of the LMDB and prefixes each with the 8 geometry bytes the targets read (fuzz_input.h).
Run from the repository root: python tests/fuzz/make_seeds.py (the seeds are committed; rerun only to
refresh them after a format change).
"""

from __future__ import annotations

import shutil
import struct
import sys
import tempfile
from pathlib import Path

import lmdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "data"))
sys.path.insert(0, str(HERE.parent.parent))

from clipkit import write_pair  # noqa: E402

# (mode, H-1, W-1, C selector, top, left, h, w fractions): geometry from the header, whole frame and crops.
PREFIXES = [
    bytes([1, 0, 0, 0, 0, 0, 255, 255]),
    bytes([1 | 2, 0, 0, 0, 128, 64, 40, 200]),
    bytes([1 | 4 | 8 | 16, 0, 0, 0, 250, 250, 0, 0]),
]


def _values(storage: str, c: int, tmp: Path, plain_png: bool = False) -> list[bytes]:
    from edvr_fast.data import pack as pack_mod
    from edvr_fast.data.meta import frame_key

    root = tmp / f"src_{c}"
    if not root.exists():
        write_pair(root, "a", 0, 2, 20, 24, scale=2, c=c)
    dst = tmp / f"pack_{storage}_{c}_{int(plain_png)}"
    if plain_png:
        saved, pack_mod._banded_png_encoder = pack_mod._banded_png_encoder, lambda: None
    try:
        pack_mod.pack(root, dst, storage=storage, progress=False, workers=1)
    finally:
        if plain_png:
            pack_mod._banded_png_encoder = saved
    env = lmdb.open(str(dst), readonly=True, lock=False)
    with env.begin() as txn:
        vals = [bytes(txn.get(frame_key(kind, 0, 1))) for kind in ("lq", "gt")]
    env.close()
    return vals


def main() -> None:
    corpus = HERE / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        sets = {
            "fuzz_png_banded": [v for c in (3, 1) for v in _values("png", c, tmp)],
            "fuzz_jpeg": [v for c in (3, 1) for v in _values("jpg", c, tmp)],
        }
        sets["fuzz_png"] = sets["fuzz_png_banded"] + [v for c in (3, 1) for v in _values("png", c, tmp, True)]
        for target, values in sets.items():
            out = corpus / target
            out.mkdir(parents=True)
            for i, v in enumerate(values):
                for j, prefix in enumerate(PREFIXES):
                    (out / f"frame{i}_geom{j}").write_bytes(prefix + v)
        out = corpus / "fuzz_crop_task"
        out.mkdir(parents=True)
        # The crops the sampler makes on these frames: H, W, C, top, left, h, w, delta, flags, out type.
        tasks = [
            (20, 24, 3, 0, 0, 20, 24, 0, 0, 0),
            (40, 48, 3, 5, 7, 16, 16, 0, 7, 1),
            (20, 24, 1, 19, 23, 1, 1, 0, 4, 2),
            (40, 48, 1, 8, 8, 32, 40, -1, 1, 0),
            (20, 24, 3, 4, 4, 16, 16, 0, 8, 0),
        ]
        for i, t in enumerate(tasks):
            (out / f"task{i}").write_bytes(struct.pack("<8i2B", *t))
    print(f"wrote seeds under {corpus}")


if __name__ == "__main__":
    main()
