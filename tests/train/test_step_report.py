"""What a run reports and how its step runs: the throughput line (iterations/s, samples/s), the step set-up,
no reads of device values between log intervals, the opt-in fused Adam, and the labelled sample sheets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from trainkit import tiny_config

from edvr_fast.train import loop
from edvr_fast.train.loop import Trainer
from edvr_fast.train.sheets import sample_sheet

PACKAGE = str(Path(loop.__file__).resolve().parent.parent)  # .../edvr_fast


def _events(out, kind):
    return [r for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if r["event"] == kind]


def test_throughput_line_reports_iterations_and_samples_per_second(tmp_path, capsys):
    cfg = tiny_config(train={"iters": 6}, loader={"batch_size": 3, "num_workers": 0}, log={"every": 2})
    res = Trainer(cfg, out=tmp_path).run()
    err = capsys.readouterr().err
    assert res.it_per_s > 0 and res.samples_per_s == pytest.approx(3 * res.it_per_s)
    assert f"throughput: {res.it_per_s:.2f} it/s, {res.samples_per_s:.1f} samples/s (batch 3 x 1" in err
    train = _events(tmp_path, "train")
    assert [r["iteration"] for r in train] == [2, 4, 6]
    for r in train:
        assert r["it_per_s"] > 0 and r["samples_per_s"] == pytest.approx(3 * r["it_per_s"])
    end = _events(tmp_path, "end")[-1]
    assert end["it_per_s"] == pytest.approx(res.it_per_s) and end["samples_per_s"] == pytest.approx(res.samples_per_s)


def test_the_log_says_what_the_step_runs(tmp_path, capsys):
    Trainer(tiny_config(train={"iters": 1}), out=tmp_path).run()
    step = _events(tmp_path, "step")[0]
    assert step["precision"] == "fp32" and step["channels_last"] is False and step["compile"] is False
    assert step["adam"] == "for-loop" and step["cpu_threads"] == torch.get_num_threads()
    assert "step: precision fp32, channels_last False, compile False, adam for-loop" in capsys.readouterr().err


def test_no_device_reads_between_log_intervals(tmp_path, monkeypatch):
    """edvr_fast code reads no tensor value (item, tolist, bool, float, int, cpu, numpy) inside a training
    step: loss, offset statistics and EMA stay on the device until the log interval (every 4 here)."""
    cfg = tiny_config(train={"iters": 8, "ema_decay": 0.9}, log={"every": 4}, checkpoint={"every": 100},
                      optim={"grad_clip": 1.0})
    t = Trainer(cfg, out=tmp_path)
    reads: list[tuple[int, str]] = []
    state = {"on": False}

    def spy(name):
        orig = getattr(torch.Tensor, name)

        def wrapper(self, *a, **k):
            caller = sys._getframe(1).f_code.co_filename
            if state["on"] and caller.startswith(PACKAGE):
                reads.append((t.it, f"{name} in {Path(caller).name}:{sys._getframe(1).f_lineno}"))
            return orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        spy(name)
    step = t._step

    def counted_step(lq, gt):
        state["on"] = True  # set-up before the first step may read what it likes
        step(lq, gt)

    monkeypatch.setattr(t, "_step", counted_step)
    t.run()
    assert reads, "the spy saw no reads at all: it is not measuring anything"
    during_steps = [r for r in reads if r[0] % 4 != 0]
    assert not during_steps, during_steps
    assert {it for it, _ in reads} <= {4, 8}


def test_fused_adam_is_opt_in(tmp_path):
    default = Trainer(tiny_config(train={"iters": 1}), out=tmp_path / "a")
    assert not default.opt.defaults.get("fused")
    t = Trainer(tiny_config(train={"iters": 2, "fused_adam": True}), out=tmp_path / "b")
    assert t.opt.defaults["fused"] is True
    res = t.run()
    assert res.iterations == 2 and _events(tmp_path / "b", "step")[0]["adam"] == "fused"


def test_sample_sheet_is_enlarged_and_labelled():
    panels = [np.full((32, 48, 3), v, np.uint8) for v in (60, 120, 180)]
    sheet = sample_sheet(panels, ["input 20.00 dB", "output 25.00 dB", "GT"])
    assert sheet.shape[0] >= 256 + 20  # 32 rows enlarged 8x, plus the label strip
    assert sheet.shape[1] >= 3 * 48 * 8
    header = sheet[:20]
    assert (header > 200).any()  # white label text on the dark strip
    body = sheet[40:, :100]
    assert (body == 60).all()  # nearest-neighbour enlargement keeps the pixel values


def test_validation_writes_labelled_sheets(tmp_path):
    cfg = tiny_config(train={"iters": 2}, val={"every": 0, "max_samples": 2, "save_samples": 1})
    Trainer(cfg, out=tmp_path).run()
    (png,) = list((tmp_path / "samples").rglob("*.png"))
    img = cv2.imread(str(png))
    assert img.shape[0] >= 256 and img.shape[1] >= 3 * 256
    assert not list((tmp_path / "samples").rglob("*.partial"))


def test_a_run_prints_its_throughput_line_once(tmp_path, capsys):
    """The loop prints the throughput line (stderr); the CLI's closing summary (stdout) does not repeat it."""
    import yaml
    from trainkit import tiny_dict

    from edvr_fast.train.__main__ import main

    config = tmp_path / "tiny.yml"
    config.write_text(yaml.safe_dump(tiny_dict(train={"iters": 2})))
    assert main(["--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "vs identity" in out and "inference:" in out  # the summary was printed
    assert (out + err).count("throughput:") == 1 and "throughput:" in err


def test_sample_sheets_are_spread_over_the_validation_clips(tmp_path):
    cfg = tiny_config(train={"iters": 1}, data={"synthetic_val_clips": 2},
                      val={"every": 0, "max_samples": 6, "save_samples": 2})
    Trainer(cfg, out=tmp_path).run()
    names = sorted(p.name for p in (tmp_path / "samples").rglob("*.png"))
    assert len(names) == 2 and {n.rsplit("_", 1)[0] for n in names} == {"scene_002", "scene_003"}, names
