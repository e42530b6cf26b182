"""`infer --gt HR --degrade bicubic|bd --scale S`: the LQ made from HR and scored against it in one command, equal to
degrading by hand and running `--input LQ --gt HR`; a scale other than the checkpoint's is an error saying both."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edvr_fast import infer
from edvr_fast.data.degrade import degrade, modcrop
from edvr_fast.models.checkpoints import FORMAT


@pytest.fixture
def setup(tmp_path: Path, tiny) -> Path:
    model = tiny(seed=1, scale=2)
    torch.save({"format": FORMAT, "model_params": model.params.to_dict(), "model": model.state_dict()},
               tmp_path / "x2.pth")
    y, x = np.mgrid[0:23, 0:30].astype(np.float64)  # 23 rows: the last one is cropped away at x2
    for c in range(2):
        (tmp_path / "hr" / f"clip{c}").mkdir(parents=True)
        for i in range(4):
            img = np.stack([np.sin((x + 2 * i) / (4 + k + c)) * np.cos((y - i) / (6 - k)) for k in range(3)], -1)
            cv2.imwrite(str(tmp_path / "hr" / f"clip{c}" / f"{i:03d}.png"),
                        np.clip(img * 100 + 128, 0, 255).astype(np.uint8))
    return tmp_path


def _run(*args: object) -> int:
    return infer.main([*map(str, args), "--no-progress", "--batch", "2", "--device", "cpu"])


def test_degrade_then_restore_and_score_in_one_command(setup: Path) -> None:
    t, method = setup, "bicubic"  # bd takes the same path with another method name (tests/data/test_degrade.py)
    assert _run("--checkpoint", t / "x2.pth", "--gt", t / "hr", "--degrade", method, "--scale", 2,
                "--output", t / "out", "--json", t / "one.json") == 0
    # The same by hand: LQ and cropped GT written as files, then the ordinary --input/--gt path.
    for c in range(2):
        for side in ("lq", "gt"):
            (t / side / f"clip{c}").mkdir(parents=True)
        for i in range(4):
            hr = modcrop(cv2.imread(str(t / "hr" / f"clip{c}" / f"{i:03d}.png")), 2)
            cv2.imwrite(str(t / "lq" / f"clip{c}" / f"{i:03d}.png"), degrade(np.ascontiguousarray(hr), method, 2))
            cv2.imwrite(str(t / "gt" / f"clip{c}" / f"{i:03d}.png"), hr)
    assert _run("--checkpoint", t / "x2.pth", "--input", t / "lq", "--gt", t / "gt", "--output", t / "out2",
                "--json", t / "two.json") == 0
    one, two = (json.loads((t / f).read_text()) for f in ("one.json", "two.json"))
    assert one["overall"]["frames"] == 8
    assert one["overall"]["psnr"] == pytest.approx(two["overall"]["psnr"], abs=1e-9)
    out = cv2.imread(str(t / "out" / "clip0" / "002.png"))
    assert out.shape == (22, 30, 3) and np.array_equal(out, cv2.imread(str(t / "out2" / "clip0" / "002.png")))


def test_scale_other_than_the_checkpoints_is_an_error_saying_both(setup: Path, capsys) -> None:
    t = setup
    assert _run("--checkpoint", t / "x2.pth", "--gt", t / "hr", "--degrade", "bicubic", "--scale", 4,
                "--output", t / "o") == 2
    err = capsys.readouterr().err
    assert "--scale 4" in err and "x2" in err and "Traceback" not in err
    assert _run("--checkpoint", t / "x2.pth", "--input", t / "hr", "--gt", t / "hr", "--degrade", "bd",
                "--scale", 2, "--output", t / "o") == 2
    assert "no --input" in capsys.readouterr().err
    assert _run("--checkpoint", t / "x2.pth", "--output", t / "o") == 2
    assert "--input is required" in capsys.readouterr().err
