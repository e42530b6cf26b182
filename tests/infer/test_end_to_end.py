"""End to end on generated clips: pack -> short train -> infer (frames and video) -> evaluate, and the CLI errors.

`_train` runs `python -m edvr_fast.train` on the pack; nothing else here depends on how the model was trained.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edvr_fast import evaluate, infer
from edvr_fast.data.frames import iter_video, list_frames, read_image
from edvr_fast.data.pack import pack
from edvr_fast.inference.engine import frame_to_tensor, tensor_to_frame
from edvr_fast.models import load_pretrained

SCALE = 2
TINY = dict(num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1, scale=SCALE)


def _gt_frame(clip: int, i: int, h: int, w: int) -> np.ndarray:
    """A smooth moving pattern: restorable from a 2x downscale, different in every frame."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [np.sin((x + 2 * i) / (5 + k + clip)) * np.cos((y - i) / (7 - k)) for k in range(3)]
    return np.clip(np.stack(chans, -1) * 100 + 128, 0, 255).astype(np.uint8)


def _write_clips(root: Path, clips: int, frames: int, h: int, w: int) -> None:
    for c in range(clips):
        for side in ("input", "gt"):
            (root / side / f"clip{c}").mkdir(parents=True)
        for i in range(frames):
            gt = _gt_frame(c, i, h, w)
            lq = cv2.resize(gt, (w // SCALE, h // SCALE), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(root / "gt" / f"clip{c}" / f"f_{i}.png"), gt)
            cv2.imwrite(str(root / "input" / f"clip{c}" / f"f_{i}.png"), lq)


def _train(pack_dir: Path, ckpt: Path, steps: int = 8) -> None:
    """A short run of `python -m edvr_fast.train` on the pack (a tiny model); its checkpoint becomes `ckpt`."""
    out = ckpt.parent / "run"
    sets = {"model.num_feat": 8, "model.num_frame": 3, "model.deformable_groups": 2, "model.num_extract_block": 1,
            "model.num_reconstruct_block": 1, "model.scale": SCALE, "data.sample.num_frame": 3,
            "data.sample.gt_size": 16, "loader.batch_size": 4, "checkpoint.every": steps, "val.every": 0,
            "log.every": steps, "data.val_fraction": 0.5}
    cmd = [sys.executable, "-m", "edvr_fast.train", "--data", str(pack_dir), "--out", str(out), "--iters", str(steps),
           "--no-progress"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    made = sorted((out / "checkpoints").glob("iter_*.pt"))
    assert made, f"no checkpoint in {out / 'checkpoints'}: {r.stdout[-2000:]}"
    shutil.copyfile(made[-1], ckpt)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    _write_clips(root / "data", clips=2, frames=5, h=32, w=40)
    pack(root / "data", root / "pack", progress=False)
    _train(root / "pack", root / "model.pth")
    return root


def _infer(*args: str) -> int:
    return infer.main([*map(str, args), "--no-progress", "--batch", "2"])


def test_pack_train_infer_evaluate(trained, tmp_path, capsys):
    data = trained / "data"
    out = tmp_path / "out"
    rc = _infer("--checkpoint", trained / "model.pth", "--input", data / "input", "--output", out,
                "--gt", data / "gt", "--crop-border", SCALE, "--json", tmp_path / "infer.json")
    text = capsys.readouterr().out
    assert rc == 0
    assert "restored 10 frames in 2 clips" in text and "frames/s" in text
    assert re.search(r"frames/s on cpu; decode [\d.]+s, model [\d.]+s, encode [\d.]+s, score [\d.]+s\)", text)
    for c in range(2):
        names = [f.name for f in list_frames(out / f"clip{c}")[0]]
        assert names == [f"f_{i}.png" for i in range(5)]  # same names as the input frames, as PNG
        assert read_image(out / f"clip{c}" / "f_0.png").shape == (32, 40, 3)
    from_infer = json.loads((tmp_path / "infer.json").read_text())
    assert from_infer["overall"]["frames"] == 10 and from_infer["overall"]["psnr"] > 20

    rc = evaluate.main(["--pred", str(out), "--gt", str(data / "gt"), "--crop-border", str(SCALE), "--no-progress",
                        "--json", str(tmp_path / "eval.json"), "--csv", str(tmp_path / "eval.csv")])
    text = capsys.readouterr().out
    assert rc == 0 and "clip0" in text and "overall" in text
    from_eval = json.loads((tmp_path / "eval.json").read_text())
    # Scoring the written PNGs gives exactly what infer --gt measured in the same pass.
    assert from_eval["overall"]["psnr"] == pytest.approx(from_infer["overall"]["psnr"], abs=1e-6)
    assert from_eval["clips"]["clip1"]["ssim"] == pytest.approx(from_infer["clips"]["clip1"]["ssim"], abs=1e-6)
    # And matches an independent per-frame computation on the files.
    pred, gt = read_image(out / "clip0" / "f_3.png"), read_image(data / "gt" / "clip0" / "f_3.png")
    frame = from_eval["clips"]["clip0"]["frames"][3]
    assert frame["frame"] == "f_3"
    c = SCALE
    mse = np.mean((pred[c:-c, c:-c].astype(np.float64) - gt[c:-c, c:-c]) ** 2)
    assert frame["psnr"] == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-4)
    rows = (tmp_path / "eval.csv").read_text().splitlines()
    assert rows[0] == "clip,frame,psnr,ssim,tof" and rows[-1].startswith("overall,mean,")
    assert len(rows) == 1 + 10 + 2 + 1


@pytest.mark.parametrize("boundary, window0", [("reflection", [1, 0, 1]), ("replicate", [0, 0, 1])])
def test_output_is_the_checkpoint_applied_to_boundary_windows(trained, tmp_path, boundary, window0):
    """Each written frame is the loaded model on its window; clip ends follow the chosen boundary policy."""
    data = trained / "data" / "input" / "clip0"
    out = tmp_path / "o"
    assert _infer("--checkpoint", trained / "model.pth", "--input", data, "--output", out,
                  "--boundary", boundary) == 0
    model = load_pretrained(trained / "model.pth")
    lq = [frame_to_tensor(read_image(data / f"f_{i}.png"), torch.device("cpu")) for i in range(5)]
    for centre, window in ((0, window0), (2, [1, 2, 3]), (4, [3, 4, 3] if boundary == "reflection" else [3, 4, 4])):
        with torch.no_grad():
            expected = tensor_to_frame(model(torch.stack([lq[j] for j in window])[None])[0].clamp(0, 1))
        got = read_image(out / f"f_{centre}.png")
        assert np.abs(got.astype(int) - expected).max() <= 1, (boundary, centre)


def test_video_in_video_out_same_fps(trained, tmp_path, capsys):
    src = tmp_path / "in.mp4"
    vw = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 12, (20, 16))
    for i in range(4):
        vw.write(cv2.resize(_gt_frame(0, i, 32, 40), (20, 16), interpolation=cv2.INTER_AREA))
    vw.release()
    dst = tmp_path / "out.mp4"
    assert _infer("--checkpoint", trained / "model.pth", "--input", src, "--output", dst) == 0
    frames = list(iter_video(dst))
    assert len(frames) == 4 and frames[0].shape == (32, 40, 3)
    cap = cv2.VideoCapture(str(dst))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12, abs=0.01)
    cap.release()
    # Video to PNG frames: numbered from 000000.
    assert _infer("--checkpoint", trained / "model.pth", "--input", src, "--output", tmp_path / "png") == 0
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    assert "restored 4 frames in 1 clips" in capsys.readouterr().out


def test_frames_to_video_defaults_to_25_fps_or_fps_flag(trained, tmp_path):
    src = trained / "data" / "input" / "clip1"
    for fps, expected in ((None, 25.0), ("7", 7.0)):
        dst = tmp_path / f"v{fps}.mp4"
        extra = ["--fps", fps] if fps else []
        assert _infer("--checkpoint", trained / "model.pth", "--input", src, "--output", dst, *extra) == 0
        cap = cv2.VideoCapture(str(dst))
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(expected, abs=0.01)
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
        cap.release()


def test_tiled_ensemble_bf16_cli_outputs_are_sane(trained, tmp_path):
    src = trained / "data" / "input" / "clip0"
    ck = trained / "model.pth"
    assert _infer("--checkpoint", ck, "--input", src, "--output", tmp_path / "plain") == 0
    assert _infer("--checkpoint", ck, "--input", src, "--output", tmp_path / "tiled", "--tile", "12",
                  "--tile-overlap", "4") == 0
    assert _infer("--checkpoint", ck, "--input", src, "--output", tmp_path / "ens", "--ensemble") == 0
    assert _infer("--checkpoint", ck, "--input", src, "--output", tmp_path / "bf16", "--bf16") == 0
    plain = read_image(tmp_path / "plain" / "f_2.png").astype(np.float64)
    for name, tol in (("tiled", 8.0), ("ens", 8.0), ("bf16", 8.0)):
        other = read_image(tmp_path / name / "f_2.png").astype(np.float64)
        assert other.shape == plain.shape
        assert np.abs(other - plain).mean() < tol, name  # same restoration, up to seams/rounding/precision


def test_error_cases_exit_nonzero_without_traceback(trained, tmp_path, capsys):
    data = trained / "data"
    ck = trained / "model.pth"
    cases = [
        (["--checkpoint", tmp_path / "missing.pth", "--input", data / "input", "--output", tmp_path / "a"],
         "checkpoint file not found"),
        (["--checkpoint", ck, "--input", tmp_path / "nope", "--output", tmp_path / "b"], "input does not exist"),
        (["--checkpoint", ck, "--preset", "edvr-m-sr4", "--input", data / "input", "--output", tmp_path / "c"],
         str(ck)),
        (["--checkpoint", ck, "--input", data / "input", "--output", tmp_path / "d.mp4"], "must be a folder"),
    ]
    bad_png = tmp_path / "broken"
    bad_png.mkdir()
    (bad_png / "0.png").write_bytes(b"\x89PNG\r\n\x1a\nIDAT garbage")
    cases.append((["--checkpoint", ck, "--input", bad_png, "--output", tmp_path / "e"], "0.png"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    cases.append((["--checkpoint", junk, "--input", data / "input", "--output", tmp_path / "f"], "junk.pth"))
    for args, needle in cases:
        assert _infer(*args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and "Traceback" not in err, (args, err)


def test_evaluate_errors_on_mismatched_trees(trained, tmp_path, capsys):
    data = trained / "data"
    assert evaluate.main(["--pred", str(data / "input"), "--gt", str(data / "gt"), "--no-progress"]) == 2
    assert "GT is 40x32" in capsys.readouterr().err  # input frames are half the GT size
    assert evaluate.main(["--pred", str(data / "gt"), "--gt", str(tmp_path), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
