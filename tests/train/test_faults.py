"""Checkpoints that load but do not fit the run (missing keys, other shapes, a data position for another
pack) are skipped by --resume auto, which falls back to the previous one and says so."""

from __future__ import annotations

import json

import pytest
import torch
from trainkit import tiny_config

from edvr_fast.train import checkpoints as ck
from edvr_fast.train import run
from edvr_fast.train.loop import Trainer


def _drop_key(state: dict) -> None:
    del state["model"]["conv_last.weight"]


def _reshape(state: dict) -> None:
    w = state["model"]["conv_last.bias"]
    state["model"]["conv_last.bias"] = torch.zeros(w.numel() + 1)


def _other_pack(state: dict) -> None:
    state["train"]["pack_id"] = "0" * 32


def _other_sampler(state: dict) -> None:
    data = state["train"]["data"]
    sampler = data["loader"]["sampler"] if data["kind"] == "fused" else data["sampler"]
    sampler["num_samples"] += 7


def _optimizer_shape(state: dict) -> None:
    opt = state["train"]["optimizer"]
    first = next(iter(opt["state"].values()))
    first["exp_avg"] = torch.zeros(3, 3, 3)


def _no_train_key(state: dict) -> None:
    del state["train"]["rng"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 6-iteration run with checkpoints at 3 and 6 (kept as pristine copies for each case)."""
    out = tmp_path_factory.mktemp("run")
    run(tiny_config(train={"iters": 6}, checkpoint={"every": 3, "keep": 3}), out=out)
    folder = out / "checkpoints"
    return out, {i: ck.load_checkpoint(folder / ck.checkpoint_name(i)) for i in (3, 6)}


@pytest.mark.parametrize(
    "spoil, why",
    [
        (_drop_key, "model has 1 missing key"),
        (_reshape, "model\\['conv_last.bias'\\] has shape"),
        (_other_pack, "sampler state is for pack 0000"),
        (_other_sampler, "sampler state has num_samples="),
        (_optimizer_shape, "optimizer exp_avg of parameter"),
        (_no_train_key, "training state lacks rng"),
    ],
)
def test_resume_auto_falls_back_from_an_inconsistent_checkpoint(trained, tmp_path, capsys, spoil, why) -> None:
    _, states = trained
    folder = tmp_path / "checkpoints"
    for i, state in states.items():
        state = {k: v for k, v in state.items()}
        state["train"] = dict(state["train"])
        state["model"] = dict(state["model"])
        if i == 6:
            state["train"]["optimizer"] = {
                "state": {k: dict(v) for k, v in state["train"]["optimizer"]["state"].items()},
                "param_groups": state["train"]["optimizer"]["param_groups"],
            }
            state["train"]["data"] = json.loads(json.dumps(state["train"]["data"]))
            spoil(state)
        ck.atomic_save(state, folder / ck.checkpoint_name(i))
    with pytest.warns(UserWarning, match=f"skipping inconsistent checkpoint .*iter_00000006.pt: {why}"):
        t = Trainer(tiny_config(train={"iters": 6}), out=tmp_path, resume="auto")
    try:
        assert t.it == 3 and t.good_ckpt == folder / ck.checkpoint_name(3)
        events = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
        assert [e["iteration"] for e in events if e["event"] == "resume"] == [3]
        err = capsys.readouterr().err
        assert "--resume auto: skipping inconsistent checkpoint" in err and "falling back to the previous one" in err
        assert "resumed from" in err and "iter_00000003.pt" in err
    finally:
        t.batches.close()


def test_every_checkpoint_inconsistent_starts_from_scratch(trained, tmp_path) -> None:
    _, states = trained
    for i, state in states.items():
        state = dict(state, model=dict(state["model"]))
        _drop_key(state)
        ck.atomic_save(state, tmp_path / "checkpoints" / ck.checkpoint_name(i))
    with pytest.warns(UserWarning, match="skipping inconsistent"):
        t = Trainer(tiny_config(train={"iters": 6}), out=tmp_path, resume="auto")
    try:
        assert t.it == 0 and t.good_ckpt is None
    finally:
        t.batches.close()


def test_checkpoint_into_a_full_disk(tmp_path) -> None:
    """ENOSPC mid-save: CheckpointError naming the previous checkpoint, which stays the newest valid one, and
    no partial file left."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from diskfull import small_tmpfs

    from edvr_fast.errors import CheckpointError

    with small_tmpfs(tmp_path / "disk", 512) as disk:
        small = {"format": ck.FORMAT, "model": {"w": torch.ones(16)}, "train": {"iteration": 1}}
        first = ck.atomic_save(small, disk / ck.checkpoint_name(1))
        big = {"format": ck.FORMAT, "model": {"w": torch.zeros(1 << 18)}, "train": {"iteration": 2}}  # 1 MiB
        with pytest.raises(CheckpointError, match="disk is full.*partial file removed; the newest complete "
                                                  "checkpoint is still .*iter_00000001.pt"):
            ck.atomic_save(big, disk / ck.checkpoint_name(2))
        assert [p.name for p in disk.iterdir()] == [first.name]
        path, state = ck.find_latest(disk)
        assert path == first and torch.equal(state["model"]["w"], torch.ones(16))
