"""`pack --degrade bicubic|bd --scale S` on a GT-only tree: GT cropped bottom/right, LQ derived, meta records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clipkit import frame_pixels, write_clip

from edvr_fast.data import pack as pack_mod
from edvr_fast.data.degrade import degrade
from edvr_fast.data.meta import FORMAT_VERSION, load_meta
from edvr_fast.data.store import ClipStore
from edvr_fast.errors import DatasetError


@pytest.fixture
def gt_tree(tmp_path: Path) -> Path:
    root = tmp_path / "hr"
    write_clip(root / "walk", 0, 4, 34, 41)  # not a multiple of 4: cropped to 32 x 40
    write_clip(root / "city", 1, 3, 32, 32)
    return root


@pytest.mark.parametrize("method", ["bicubic", "bd"])
@pytest.mark.parametrize("storage", ["raw", "png"])
def test_pack_writes_cropped_gt_and_derived_lq(gt_tree: Path, tmp_path: Path, method: str, storage: str) -> None:
    dst = tmp_path / "pack"
    meta = pack_mod.pack(gt_tree, dst, degrade=method, scale=4, storage=storage, progress=False, workers=2)
    assert meta.scale == 4 and meta.pairing["mode"] == "degraded"
    on_disk = json.loads((dst / "meta.json").read_text())
    assert on_disk["degradation"]["name"] == method and on_disk["degradation"]["scale"] == 4
    assert on_disk["degradation"]["edvr_fast_version"]
    assert on_disk["format_version"] == FORMAT_VERSION  # an optional field: it bumps no version (FORMAT.md)
    assert load_meta(dst).degradation == on_disk["degradation"]
    with ClipStore(dst) as st:
        names = [c.name for c in st.clips]
        walk = st.clips[names.index("walk")]
        assert walk.gt_shape == (32, 40, 3) and walk.lq_shape == (8, 10, 3)
        for f in range(4):
            src = frame_pixels(0, f, 34, 41)
            gt = st.frame(names.index("walk"), f, "gt")
            assert np.array_equal(gt, src[:32, :40])  # the bottom and right were cut
            lq = st.frame(names.index("walk"), f, "lq")
            assert np.array_equal(lq, degrade(np.ascontiguousarray(src[:32, :40]), method, 4))


def test_meta_without_the_field_still_loads(gt_tree: Path, tmp_path: Path) -> None:
    dst = tmp_path / "pack"
    pack_mod.pack(gt_tree, dst, degrade="bicubic", scale=2, progress=False, workers=2)
    d = json.loads((dst / "meta.json").read_text())
    d.pop("degradation")
    (dst / "meta.json").write_text(json.dumps(d))
    assert load_meta(dst).degradation is None
    plain = json.loads(json.dumps(load_meta(dst).to_json()))
    assert "degradation" not in plain


def test_gt_smaller_than_the_crop_names_the_clip(gt_tree: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"clip 'city'.*smaller than the training crop 33"):
        pack_mod.pack(gt_tree, tmp_path / "p", degrade="bd", scale=4, crop=33, progress=False)
    assert not (tmp_path / "p").exists() and not (tmp_path / "p.partial").exists()
    tiny = tmp_path / "tiny"
    write_clip(tiny / "dot", 0, 2, 3, 9)
    with pytest.raises(DatasetError, match="clip 'dot'"):
        pack_mod.pack(tiny, tmp_path / "q", degrade="bicubic", scale=4, progress=False)


def test_cli(gt_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dst = tmp_path / "pk"
    assert pack_mod.main([str(gt_tree), str(dst), "--degrade", "bd", "--scale", "2", "--no-progress"]) == 0
    assert "scale x2" in capsys.readouterr().out and load_meta(dst).degradation["name"] == "bd"
    assert pack_mod.main([str(gt_tree), str(tmp_path / "e"), "--degrade", "bd", "--scale", "4", "--crop", "64",
                          "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "clip 'city'" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        pack_mod.main([str(gt_tree), str(tmp_path / "f"), "--degrade", "bd"])  # no --scale
    assert "--scale" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pack_mod.main([str(gt_tree), str(tmp_path / "g"), "--scale", "4"])  # --scale without --degrade
