"""Defaults belong to their use: the built-in default run's settings (train/demo.py) apply only with none of
--data / --preset / --config; user runs start from the schema's EDVR-typical defaults (README, Train)."""

from __future__ import annotations

import subprocess
import sys

import yaml

from edvr_fast.config import TrainConfig
from edvr_fast.train.__main__ import build_config
from edvr_fast.train.demo import DEMO


def _get(cfg: TrainConfig, key: str):
    node = cfg.to_dict()
    for k in key.split("."):
        node = node[k]
    return node


def test_demo_settings_only_in_the_default_run(tmp_path):
    demo = build_config(None, [])
    for key, value in DEMO.items():
        assert _get(demo, key) == value, key
    user = build_config(None, [], data=str(tmp_path / "pack"))
    preset = build_config(None, [], preset="edvr-m-deblur")
    for cfg in (user, preset, build_config(None, ["data.path=x"])):
        assert cfg.train.ema_decay is None and cfg.optim.lr == 4e-4 and cfg.schedule.kind == "cosine"
        assert cfg.data.sample.gt_size == 256 and cfg.train.iters == 600000 and cfg.train.bf16 is False
        assert cfg.loss.eps == 1e-3  # the demo's near-quadratic Charbonnier (eps 0.1) is its own
    assert user.model.num_feat == 64 and preset.model.hr_in is True and preset.model.scale == 1


def test_readme_table_matches_the_schema():
    """The README's table of user-run defaults is what the schema holds."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "README.md").read_text()
    cfg = TrainConfig()
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2].strip()
            for line in text.splitlines() if line.startswith("| `") and line.count("|") >= 4}
    for key in ("train.iters", "optim.lr", "schedule.kind", "schedule.eta_min", "data.sample.gt_size",
                "loader.batch_size", "train.ema_decay", "val.every"):
        assert key in rows, f"README's defaults table lacks {key}"
        want = _get(cfg, key)
        got = yaml.safe_load(rows[key].split("`")[1])  # the first `value` of the user-run column
        if isinstance(got, str) and isinstance(want, float):
            got = float(got)  # YAML reads 4e-4 (no dot) as a string
        assert got == want or (want is None and got == "none"), (key, rows[key], want)


def test_print_config_shows_which_defaults():
    run = [sys.executable, "-m", "edvr_fast.train", "--print-config"]
    r = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "built-in default run" in r.stdout and "loss.eps: 0.1 (user runs: 0.001)" in r.stdout
    assert yaml.safe_load(r.stdout)["optim"]["lr"] == 2e-3
    r = subprocess.run(run + ["--preset", "edvr-m-sr4"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "a user run" in r.stdout
    d = yaml.safe_load(r.stdout)
    assert d["optim"]["lr"] == 4e-4 and d["train"]["ema_decay"] is None and d["val"]["enabled"] is True
