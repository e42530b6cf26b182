"""The training loop in-process: exact resume, checkpoint contents, TSA-only phase, NaN stop, offset rollback."""

from __future__ import annotations

import json

import pytest
import torch
from trainkit import tiny_config

from edvr_fast.models import load_pretrained
from edvr_fast.train import checkpoints as ck
from edvr_fast.train import loop, run
from edvr_fast.train.loop import Trainer, TrainingDiverged


def _events(out, kind):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()
            if json.loads(line)["event"] == kind]


def test_resume_gives_the_same_weights(tmp_path):
    # 4 batches per epoch: the interruption falls mid-epoch and the run crosses an epoch boundary. One
    # DataLoader worker reads ahead, so the resumed position must come from what was trained on.
    sections = dict(loader={"batch_size": 4, "num_workers": 1}, schedule={"periods": [10], "warmup_iters": 2},
                    train={"iters": 10, "ema_decay": 0.9}, checkpoint={"every": 5, "keep": 5})
    straight = run(tiny_config(**sections), out=tmp_path / "a")
    half = dict(sections, train={"iters": 5, "ema_decay": 0.9})
    run(tiny_config(**half), out=tmp_path / "b")
    resumed = run(tiny_config(**sections), out=tmp_path / "b", resume="auto")
    assert straight.iterations == resumed.iterations == 10
    a = ck.load_checkpoint(straight.checkpoint)
    b = ck.load_checkpoint(resumed.checkpoint)
    assert a["train"]["data"]["epoch"] == 2 and a["train"]["data"] == b["train"]["data"]
    for key in ("model",):
        for name, t in a[key].items():
            torch.testing.assert_close(b[key][name], t, rtol=1e-5, atol=1e-6, msg=name)
    for name, t in a["train"]["model"].items():
        torch.testing.assert_close(b["train"]["model"][name], t, rtol=1e-5, atol=1e-6, msg=name)
    # The deployed weights are the EMA, not the raw ones, and load_pretrained reads the file.
    assert not torch.equal(a["model"]["conv_last.weight"], a["train"]["model"]["conv_last.weight"])
    model = load_pretrained(straight.checkpoint)
    torch.testing.assert_close(model.state_dict()["conv_last.weight"], a["model"]["conv_last.weight"])
    torch.load(straight.checkpoint, weights_only=True)
    assert [p.name for _, p in ck.list_checkpoints(tmp_path / "a" / "checkpoints")] == [
        "iter_00000010.pt", "iter_00000005.pt"]
    assert _events(tmp_path / "b", "resume")[0]["iteration"] == 5


def test_tsa_phase_trains_only_fusion(tmp_path):
    cfg = tiny_config(train={"iters": 2}, schedule={"tsa_iters": 2})
    t = Trainer(cfg, out=tmp_path)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.run()
    after = t.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("fusion.") for k in changed)
    assert all(t.opt.state.get(p) is None for p in t.fusion_only.others)


def test_nan_loss_stops_with_clear_error(tmp_path, monkeypatch):
    real = loop.charbonnier
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        return out * float("nan") if len(calls) == 4 else out

    monkeypatch.setattr(loop, "charbonnier", poisoned)
    cfg = tiny_config(train={"iters": 8}, log={"every": 2, "progress": False}, checkpoint={"every": 2, "keep": 5})
    with pytest.raises(TrainingDiverged, match="NaN/Inf between iterations 3 and 4") as err:
        run(cfg, out=tmp_path)
    assert "iter_00000002.pt" in str(err.value)  # names the last good checkpoint
    assert [i for i, _ in ck.list_checkpoints(tmp_path / "checkpoints")] == [2]  # no NaN weights saved


def test_offset_explosion_rolls_back_then_stops(tmp_path):
    # Any offset is "exploded" at this threshold: every log reading rolls back, lowering the DCN rate.
    cfg = tiny_config(train={"iters": 8}, log={"every": 2, "progress": False}, checkpoint={"every": 1, "keep": 5},
                      offsets={"warn_mean": 1e-12, "rollback": True, "max_rollbacks": 2, "dcn_lr_decay": 0.5})
    t = Trainer(cfg, out=tmp_path)
    with pytest.raises(TrainingDiverged, match="2 rollbacks did not help"):
        t.run()
    assert t.dcn_scale == 0.25 and t.rollbacks == 2
    rolls = _events(tmp_path, "rollback")
    assert [r["dcn_scale"] for r in rolls] == [0.5, 0.25]
    dcn = next(g for g in t.opt.param_groups if g["name"] == "dcn")
    main = next(g for g in t.opt.param_groups if g["name"] == "main")
    assert dcn["lr"] == pytest.approx(main["lr"] * 0.25)
    assert _events(tmp_path, "offset_warning")


def test_offset_warning_without_rollback(tmp_path):
    cfg = tiny_config(train={"iters": 2}, offsets={"warn_mean": 1e-12})
    res = run(cfg, out=tmp_path)
    assert res.iterations == 2 and len(_events(tmp_path, "offset_warning")) == 1
    train = _events(tmp_path, "train")
    assert train[-1]["offset_mean"] > 0 and train[-1]["loss"] > 0
    val = _events(tmp_path, "val")[-1]
    assert 0 < val["ssim"] <= 1 and val["psnr"] > 0 and val["frames"] == 2
