"""Every shell command README.md shows is run here, on tiny generated stand-ins of the files it names.

Commands come from the README's ```bash blocks, except the blocks between the <!-- main-command -->,
<!-- test-command -->, <!-- sanitizer-command --> and <!-- fuzz-command --> markers (CI runs those
itself). Each command runs as written in a fresh folder,
after its recipe made the files it names, with only the recipe's size overrides appended (`--set`,
`--iters`); the recipe then checks exit status 0 and the outputs. A README command without a recipe fails.

To register a new README command, add one entry to RECIPES: the command (or a prefix of it ending at an
argument), the stand-ins it needs (names in STANDINS, or add a maker there), the overrides and a check.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# Blocks CI runs itself, verbatim: the two set-up commands, then the sanitizer build and the fuzz pass.
SETUP_MARKERS = ("main-command", "test-command", "sanitizer-command", "fuzz-command")


# --------------------------------------------------------------------------------- reading the README
def readme_commands(text: str) -> list[str]:
    """Shell commands of the README's ```bash blocks outside the set-up markers: continuation lines
    joined, comments removed."""
    commands, in_block, skip = [], False, False
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        m = re.fullmatch(r"<!-- (/?)([\w-]+) -->", line)
        if m and m.group(2) in SETUP_MARKERS:
            skip = not m.group(1)
            continue
        if not in_block:
            in_block = line in ("```bash", "```sh", "```shell")
            lines = []
            continue
        if line.startswith("```"):
            in_block = False
            if not skip:
                commands += _join(lines)
            continue
        lines.append(raw)
    return commands


def _join(lines: list[str]) -> list[str]:
    out, current = [], ""
    for line in lines:
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        words = shlex.split(current, comments=True)
        if words:
            out.append(shlex.join(words))
        current = ""
    return out


# ------------------------------------------------------------------------------------------ stand-ins
def _frames(folder: Path, n: int, h: int, w: int, seed: int, ext: str = "jpg", blur: bool = False) -> None:
    """n frames named 000000.<ext> (as a camera or ffmpeg writes them): a texture moving right."""
    folder.mkdir(parents=True, exist_ok=True)
    tex = np.random.default_rng(seed).integers(0, 256, (h, w + 2 * n, 3), dtype=np.uint8)
    tex = cv2.GaussianBlur(tex, (3, 3), 0)
    for i in range(n):
        img = np.ascontiguousarray(tex[:, 2 * i : 2 * i + w])
        if blur:
            img = cv2.blur(img, (5, 1))
        cv2.imwrite(str(folder / f"{i:06d}.{ext}"), img)


def make_clips(d: Path) -> None:
    """my_clips/: two deblurring clips of 30 JPEG frames under input/ and gt/ (the layout of issue 13)."""
    for c in range(2):
        _frames(d / "my_clips" / "input" / f"clip{c}", 30, 48, 48, seed=c, blur=True)
        _frames(d / "my_clips" / "gt" / f"clip{c}", 30, 48, 48, seed=c)


def make_pack(d: Path) -> None:
    from edvr_fast.data.pack import pack

    make(d, "my_clips/")
    pack(d / "my_clips", d / "my_clips.lmdb", progress=False)


def make_our_config(d: Path) -> None:
    """my.yml in our schema: a deblurring run on my_clips.lmdb."""
    make(d, "my_clips.lmdb")
    (d / "my.yml").write_text("preset: edvr-m-deblur\ndata:\n  path: my_clips.lmdb\n")


def make_basicsr_options(d: Path) -> None:
    """train_EDVR_M_x4_SR_REDS_woTSA.yml: a BasicSR option file with the published file's layout."""
    (d / "train_EDVR_M_x4_SR_REDS_woTSA.yml").write_text("""\
name: stand_in_EDVR_M_woTSA
model_type: EDVRModel
scale: 4
num_gpu: 8
manual_seed: 0
datasets:
  train:
    name: REDS
    type: REDSDataset
    dataroot_gt: datasets/REDS/train_sharp_with_val.lmdb
    dataroot_lq: datasets/REDS/train_sharp_bicubic_with_val.lmdb
    io_backend: {type: lmdb}
    num_frame: 5
    gt_size: 256
    interval_list: [1]
    random_reverse: false
    use_hflip: true
    use_rot: true
    num_worker_per_gpu: 3
    batch_size_per_gpu: 4
network_g:
  type: EDVR
  num_in_ch: 3
  num_out_ch: 3
  num_feat: 64
  num_frame: 5
  deformable_groups: 8
  num_extract_block: 5
  num_reconstruct_block: 10
  center_frame_idx: ~
  hr_in: false
  with_predeblur: false
  with_tsa: false
train:
  optim_g: {type: Adam, lr: !!float 4e-4, weight_decay: 0, betas: [0.9, 0.99]}
  scheduler:
    type: CosineAnnealingRestartLR
    periods: [150000, 150000, 150000, 150000]
    restart_weights: [1, 0.5, 0.5, 0.5]
    eta_min: !!float 1e-7
  total_iter: 600000
  warmup_iter: -1
  dcn_lr_mul: 1
  pixel_opt: {type: CharbonnierLoss, loss_weight: 1.0, reduction: sum}
val:
  val_freq: !!float 5e3
  save_img: false
logger:
  print_freq: 100
  save_checkpoint_freq: !!float 5e3
""")


def make_ckpt(d: Path, scale: int = 1) -> None:
    """ckpt.pth: a checkpoint of ours for a tiny EDVR (random weights), deblurring unless `scale` says."""
    import torch

    from edvr_fast.models import EDVR, EDVRParams

    p = EDVRParams(num_feat=8, num_frame=3, deformable_groups=1, num_extract_block=1, num_reconstruct_block=1,
                   scale=scale)
    torch.save({"format": "edvr_fast", "model_params": p.to_dict(), "model": EDVR(p).state_dict()},
               d / "ckpt.pth")


def make_official_deblur(d: Path) -> None:
    """EDVR_L_deblur_REDS_official.pth: EDVR-L deblur weights in the original repository's naming."""
    import torch

    from edvr_fast.models import EDVR, preset
    from edvr_fast.models.checkpoints import export_state_dict

    torch.manual_seed(0)
    torch.save(export_state_dict(EDVR(preset("edvr-l-deblur")), "original"), d / "EDVR_L_deblur_REDS_official.pth")


def make_video(d: Path) -> None:
    """clip.mp4: 6 frames of 32x32."""
    vw = cv2.VideoWriter(str(d / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    assert vw.isOpened()
    rng = np.random.default_rng(3)
    for _ in range(6):
        vw.write(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    vw.release()


def make_frames_and_sharp(d: Path) -> None:
    """frames/ (blurred) and sharp/ (GT): 3 frames of 64x64 PNG."""
    _frames(d / "frames", 3, 64, 64, seed=7, ext="png", blur=True)
    _frames(d / "sharp", 3, 64, 64, seed=7, ext="png")


def make_out(d: Path) -> None:
    """out/ (restored frames) beside sharp/, same names."""
    make(d, "sharp/")
    _frames(d / "out", 3, 64, 64, seed=7, ext="png", blur=True)


def _video(path: Path, n: int, h: int, w: int, codec: str = "libx264", seed: int = 5) -> None:
    """A smooth moving texture as a real video file, written with PyAV (as a camera or ffmpeg would)."""
    import av

    tex = cv2.GaussianBlur(np.random.default_rng(seed).integers(0, 256, (h, w + 2 * n, 3), dtype=np.uint8),
                           (5, 5), 0)
    with av.open(str(path), "w") as out:
        st = out.add_stream(codec, rate=10)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(tex[:, 2 * i : 2 * i + w]), format="bgr24")
            out.mux(st.encode(frame))
        out.mux(st.encode())


def _video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as f:
        return sum(1 for _ in f.decode(video=0))


def make_hr_clips(d: Path) -> None:
    """hr_clips/: a GT-only tree (no input side), 2 clips of 5 PNG frames of 64x64."""
    for c in range(2):
        _frames(d / "hr_clips" / f"clip{c}", 5, 64, 64, seed=10 + c, ext="png")


def make_hr_pack(d: Path) -> None:
    make(d, "hr_clips/")
    r = subprocess.run([sys.executable, "-m", "edvr_fast.data.pack", "hr_clips/", "hr_x4.lmdb", "--degrade",
                        "bicubic", "--scale", "4", "--crop", "32"], cwd=d, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def make_hr_test(d: Path) -> None:
    """hr_test/: HR frames (one clip of 5 PNG frames of 64x64) to degrade, restore and score."""
    _frames(d / "hr_test", 5, 64, 64, seed=20, ext="png")


def make_mmagic(d: Path) -> None:
    """edvrm_x4_8x4_600k_reds.pth: EDVR-M x4 weights in mmagic's EDVRNet layout (keys under generator.)."""
    import torch

    from edvr_fast.models import EDVR, preset
    from edvr_fast.models.checkpoints import export_state_dict

    torch.manual_seed(0)
    sd = {"generator." + k: v for k, v in export_state_dict(EDVR(preset("edvr-m-sr4")), "mmagic").items()}
    torch.save({"meta": {"iter": 600000, "mmengine_version": "0.10.4"}, "state_dict": sd},
               d / "edvrm_x4_8x4_600k_reds.pth")


def make_video_pair(d: Path) -> None:
    """restored.mkv and sharp.mp4: 6 frames of 32x32 each, H.264."""
    _video(d / "restored.mkv", 6, 32, 32, seed=5)
    _video(d / "sharp.mp4", 6, 32, 32, seed=6)


STANDINS: dict[str, Callable[[Path], None]] = {
    "my_clips/": make_clips,
    "my_clips.lmdb": make_pack,
    "my.yml": make_our_config,
    "train_EDVR_M_x4_SR_REDS_woTSA.yml": make_basicsr_options,
    "ckpt.pth": make_ckpt,
    "EDVR_L_deblur_REDS_official.pth": make_official_deblur,
    "clip.mp4": make_video,
    "frames/": make_frames_and_sharp,
    "sharp/": make_frames_and_sharp,
    "out/": make_out,
    "hr_clips/": make_hr_clips,
    "hr_x4.lmdb": make_hr_pack,
    "hr_test/": make_hr_test,
    "ckpt.pth (x4)": lambda d: make_ckpt(d, scale=4),  # for the --degrade --scale 4 command
    "edvrm_x4_8x4_600k_reds.pth": make_mmagic,
    "restored.mkv": make_video_pair,
    "sharp.mp4": make_video_pair,
}


def make(d: Path, name: str) -> None:
    if not (d / name.split(" ")[0].rstrip("/")).exists():
        STANDINS[name](d)


# -------------------------------------------------------------------------------------------- recipes
Run = subprocess.CompletedProcess


@dataclass
class Recipe:
    needs: tuple[str, ...] = ()  # stand-ins (keys of STANDINS) made before the command runs
    append: tuple[str, ...] = ()  # size overrides appended to the command
    check: Callable[[Path, Run], None] | None = None  # outputs, after the exit status 0 is asserted
    timeout: int = 300


# A few-iteration run of a tiny network on 16 px crops: the model's size, not its kind, is overridden.
TINY_TRAIN = ("--iters", "2", "--no-progress", "--set", "model.num_feat=8", "--set", "model.deformable_groups=1",
              "--set", "model.num_extract_block=1", "--set", "model.num_reconstruct_block=1",
              "--set", "data.sample.gt_size=16", "--set", "loader.batch_size=2", "--set", "loader.num_workers=0",
              "--set", "checkpoint.every=2", "--set", "val.max_samples=2", "--set", "val.save_samples=1")
TINY_SYNTHETIC = ("--set", "data.synthetic_clips=3", "--set", "data.synthetic_val_clips=1",
                  "--set", "data.synthetic_frames=6", "--set", "data.synthetic_size=32")


def _checkpoint_in(run: Path) -> None:
    assert list((run / "checkpoints").glob("iter_*")), f"no checkpoint in {run}"


def check_pack(d: Path, r: Run) -> None:
    meta = json.loads((d / "my_clips.lmdb" / "meta.json").read_text())
    assert [c["name"] for c in meta["clips"]] == ["clip0", "clip1"] and (d / "my_clips.lmdb" / "data.mdb").exists()


def check_info(d: Path, r: Run) -> None:
    assert "clip0" in r.stdout + r.stderr


def check_own_data(d: Path, r: Run) -> None:
    _checkpoint_in(d / "runs" / "mine")
    clips = json.loads((d / "runs" / "mine" / "clips.json").read_text())
    assert len(clips["train"]) == 1 and len(clips["val"]) == 1 and "vs identity" in r.stdout


def check_no_val(d: Path, r: Run) -> None:
    _checkpoint_in(d / "runs" / "all")
    assert "no validation" in r.stdout
    assert json.loads((d / "runs" / "all" / "clips.json").read_text())["train"] == ["clip0", "clip1"]


def check_any_run(d: Path, r: Run) -> None:
    runs = [p for p in (d / "runs").iterdir() if (p / "checkpoints").is_dir()]
    assert len(runs) == 1, runs
    _checkpoint_in(runs[0])


def check_option_file(d: Path, r: Run) -> None:
    check_any_run(d, r)
    assert "as a BasicSR option file" in r.stderr


def check_print_config(d: Path, r: Run) -> None:
    import yaml

    assert yaml.safe_load(r.stdout)["train"]["iters"] >= 1


def check_video(d: Path, r: Run) -> None:
    cap = cv2.VideoCapture(str(d / "restored.mp4"))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert n == 6, n


def check_frames_with_gt(d: Path, r: Run) -> None:
    assert len(list((d / "out").glob("*.png"))) == 3 and "PSNR" in r.stdout + r.stderr


def check_scores(d: Path, r: Run) -> None:
    text = (d / "scores.csv").read_text()
    assert "psnr" in text.lower() and len(text.splitlines()) >= 2


def check_verify(d: Path, r: Run) -> None:
    assert "clip0" in r.stdout + r.stderr


def check_degraded_pack(d: Path, r: Run) -> None:
    meta = json.loads((d / "hr_x4.lmdb" / "meta.json").read_text())
    assert meta["degradation"]["name"] == "bicubic" and meta["degradation"]["scale"] == 4, meta.get("degradation")


def check_degraded_infer(d: Path, r: Run) -> None:
    assert len(list((d / "out").rglob("*.png"))) == 5 and "PSNR" in r.stdout + r.stderr


def check_file(name: str, text: str | None = None) -> Callable[[Path, Run], None]:
    def check(d: Path, r: Run) -> None:
        assert (d / name).is_file() and (d / name).stat().st_size > 0, f"{name} not written"
        if text is not None:
            assert text in r.stdout + r.stderr, f"{text!r} not in the output"

    return check


def check_video_out(name: str) -> Callable[[Path, Run], None]:
    def check(d: Path, r: Run) -> None:
        assert _video_frames(d / name) == 6

    return check


def check_video_scores(d: Path, r: Run) -> None:
    assert "tOF" in r.stdout + r.stderr and "PSNR" in r.stdout + r.stderr


def check_ops(d: Path, r: Run) -> None:
    assert "cpu" in r.stdout


RECIPES: dict[str, Recipe] = {
    "pip install": Recipe(),  # the set-up commands: checked by running them (CI's test command does)
    "python -m edvr_fast.ops": Recipe(check=check_ops),
    "python -m edvr_fast.data.pack my_clips/ my_clips.lmdb": Recipe(("my_clips/",), check=check_pack),
    "python -m edvr_fast.data.info my_clips.lmdb": Recipe(("my_clips.lmdb",), check=check_info),
    "python -m edvr_fast.train --data my_clips.lmdb --preset edvr-m-deblur --out runs/mine":
        Recipe(("my_clips.lmdb",), TINY_TRAIN, check_own_data),
    "python -m edvr_fast.train --data my_clips.lmdb --preset edvr-m-deblur --no-val --out runs/all":
        Recipe(("my_clips.lmdb",), TINY_TRAIN, check_no_val),
    "python -m edvr_fast.train --config my.yml": Recipe(("my.yml",), TINY_TRAIN, check_any_run),
    "python -m edvr_fast.train --config train_EDVR_M_x4_SR_REDS_woTSA.yml":
        Recipe(("train_EDVR_M_x4_SR_REDS_woTSA.yml",), TINY_TRAIN + TINY_SYNTHETIC, check_option_file),
    "python -m edvr_fast.train --print-config": Recipe(check=check_print_config),
    "python -m edvr_fast.infer --checkpoint ckpt.pth --input clip.mp4 --output restored.mp4":
        Recipe(("ckpt.pth", "clip.mp4"), ("--no-progress",), check_video),
    "python -m edvr_fast.infer --checkpoint EDVR_L_deblur_REDS_official.pth":
        Recipe(("EDVR_L_deblur_REDS_official.pth", "frames/", "sharp/"), ("--no-progress",), check_frames_with_gt,
               timeout=600),
    "python -m edvr_fast.evaluate --pred out/ --gt sharp/": Recipe(("out/", "sharp/"), check=check_scores),
    "python -m edvr_fast.data.info --verify my_clips.lmdb": Recipe(("my_clips.lmdb",), check=check_verify),
    "python -m edvr_fast.data.pack hr_clips/ hr_x4.lmdb --degrade bicubic --scale 4":
        Recipe(("hr_clips/",), ("--crop", "32"), check_degraded_pack),
    "python -m edvr_fast.train --data hr_x4.lmdb --preset edvr-m-sr4 --set data.degrade.enabled=true":
        Recipe(("hr_x4.lmdb",), TINY_TRAIN + ("--set", "data.sample.gt_size=32"), check_any_run),
    "python -m edvr_fast.infer --checkpoint ckpt.pth --gt hr_test/ --degrade bicubic --scale 4":
        Recipe(("ckpt.pth (x4)", "hr_test/"), ("--no-progress",), check_degraded_infer),
    "python -m edvr_fast.export --checkpoint ckpt.pth --output edvr.onnx":
        Recipe(("ckpt.pth",), ("--frames-size", "24x40"), check_file("edvr.onnx", "max abs")),
    "python -m edvr_fast.export --checkpoint ckpt.pth --output edvr.pt2":
        Recipe(("ckpt.pth",), check=check_file("edvr.pt2")),
    "python -m edvr_fast.export --checkpoint ckpt.pth --format aoti --output edvr_aoti.pt2":
        Recipe(("ckpt.pth",), ("--frames-size", "16x16"), check_file("edvr_aoti.pt2"), timeout=900),
    "python -m edvr_fast.export --checkpoint edvrm_x4_8x4_600k_reds.pth --output edvr_m.safetensors":
        Recipe(("edvrm_x4_8x4_600k_reds.pth",), check=check_file("edvr_m.safetensors")),
    "python -m edvr_fast.infer --checkpoint ckpt.pth --input clip.mp4 --output restored.mkv --codec h265":
        Recipe(("ckpt.pth", "clip.mp4"), ("--no-progress",), check_video_out("restored.mkv")),
    "python -m edvr_fast.infer --checkpoint ckpt.pth --input clip.mp4 --output lossless.mkv --codec ffv1":
        Recipe(("ckpt.pth", "clip.mp4"), ("--no-progress",), check_video_out("lossless.mkv")),
    "python -m edvr_fast.evaluate --pred restored.mkv --gt sharp.mp4":
        Recipe(("restored.mkv", "sharp.mp4"), check=check_video_scores),
}


def recipe_for(command: str) -> tuple[str, Recipe] | None:
    """The recipe of the longest key that is the command or a prefix of it ending at a word."""
    keys = [k for k in RECIPES if command == k or command.startswith(k + " ")]
    return (max(keys, key=len), RECIPES[max(keys, key=len)]) if keys else None


COMMANDS = readme_commands(README.read_text())


def test_readme_has_commands_and_every_recipe_is_used():
    assert len(COMMANDS) >= 8, COMMANDS
    used = {recipe_for(c)[0] for c in COMMANDS if recipe_for(c)}
    assert set(RECIPES) <= used, f"recipes for commands the README no longer shows: {set(RECIPES) - used}"


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{i}:{c[:60]}" for i, c in enumerate(COMMANDS)])
def test_readme_command(command, tmp_path):
    found = recipe_for(command)
    assert found is not None, (
        f"README.md shows `{command}` but tests/test_readme_commands.py has no recipe for it: add one to RECIPES "
        "(the stand-in files it names, size overrides, a check of its outputs)")
    key, recipe = found
    if key == "pip install":
        pytest.skip("set-up command: installs packages, run as part of CI's README test command")
    for name in recipe.needs:
        make(tmp_path, name)
    bindir = str(Path(sys.executable).parent)  # `python` is this interpreter, as in the venv the README makes
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
           "EDVR_FAST_CACHE": str(tmp_path / "cache")}
    line = command + "".join(" " + shlex.quote(a) for a in recipe.append)
    r = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=recipe.timeout)
    assert r.returncode == 0, f"`{line}` exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    if recipe.check is not None:
        recipe.check(tmp_path, r)
