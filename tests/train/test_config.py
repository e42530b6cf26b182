"""Config schema: defaults validate, unknown keys name the valid ones, values are type- and range-checked."""

from __future__ import annotations

import pytest

from edvr_fast.config import TrainConfig, apply_override, load_config, load_dict
from edvr_fast.errors import ConfigError
from edvr_fast.models import preset


def test_defaults_round_trip():
    cfg = TrainConfig()
    again = load_dict(cfg.to_dict())
    assert again == cfg
    assert again.model.num_feat == 64 and again.data.path is None  # user-run defaults (demo: train/demo.py)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_dict({"optim": {"lr": 1e-4, "betas1": 0.9}})
    msg = str(err.value)
    assert "optim.betas1" in msg and "betas" in msg and "dcn_lr_mult" in msg
    with pytest.raises(ConfigError, match="unknown key.*modle.*valid keys of the top level: preset, model"):
        load_dict({"modle": {}})
    with pytest.raises(ConfigError, match="data.sample.gtsize"):
        load_dict({"data": {"sample": {"gtsize": 64}}})


@pytest.mark.parametrize("d, match", [
    ({"optim": {"lr": -1.0}}, "optim.lr"),
    ({"optim": {"lr": "fast"}}, "optim.lr.*number"),
    ({"optim": {"betas": [0.9]}}, "optim.betas.*2 values"),
    ({"optim": {"betas": [0.9, 1.5]}}, "optim.betas"),
    ({"train": {"iters": 0}}, "train.iters"),
    ({"train": {"iters": 2.5}}, "train.iters.*integer"),
    ({"train": {"bf16": "yes"}}, "train.bf16.*true or false"),
    ({"loss": {"reduction": "max"}}, "loss.reduction"),
    ({"loader": {"kind": "magic"}}, "loader.kind"),
    ({"schedule": {"periods": [10, 10], "restart_weights": [1]}}, "one weight per period"),
    ({"model": {"num_feat": 10, "deformable_groups": 4}}, "deformable_groups"),
    ({"model": {"num_frame": 7}}, "data.sample.num_frame.*must equal model.num_frame"),
    ({"data": {"sample": {"boundary": "wrap"}}}, "boundary"),
    ({"preset": "edvr-xxl"}, "unknown EDVR preset"),
])
def test_bad_values_are_errors(d, match):
    with pytest.raises(ConfigError, match=match):
        load_dict(d)


def test_preset_then_model_overrides():
    cfg = load_dict({"preset": "edvr-m-sr4", "model": {"num_reconstruct_block": 2},
                     "data": {"sample": {"num_frame": 5}}})
    assert cfg.model == preset("edvr-m-sr4").replace(num_reconstruct_block=2)


def test_yaml_file_and_set_overrides(tmp_path):
    f = tmp_path / "c.yml"
    f.write_text("optim:\n  lr: 1e-4\n  betas: [0.8, 0.9]\ntrain:\n  iters: 10\n")
    cfg = load_config(f, ["train.iters=20", "schedule.periods=[5, 15]", "data.val_clips=[a, b]",
                          "optim.grad_clip=0.5"])
    assert cfg.optim.lr == 1e-4 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.train.iters == 20 and cfg.schedule.periods == (5, 15)
    assert cfg.data.val_clips == ("a", "b") and cfg.optim.grad_clip == 0.5
    with pytest.raises(ConfigError, match=r"unknown key\(s\) trian; valid keys of the top level: .*train"):
        load_config(f, ["trian.iters=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_override({}, "train.iters")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yml")
