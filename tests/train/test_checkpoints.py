"""Checkpoint files: atomic writes survive kill -9 mid-save, pruning, newest-valid lookup, RNG round trip."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from edvr_fast.errors import CheckpointError
from edvr_fast.train import checkpoints as ck


def _state(i: int) -> dict:
    return {"format": "edvr_fast", "model": {"w": torch.full((4,), float(i))}, "train": {"iteration": i}}


def test_kill_9_mid_save_keeps_previous(tmp_path):
    # The child saves iteration 1, then blocks inside the second torch.save after writing part of it.
    child = textwrap.dedent(f"""
        import sys, time, torch
        from edvr_fast.train import checkpoints as ck
        folder = {str(tmp_path)!r}
        ck.atomic_save({{"format": "edvr_fast", "model": {{"w": torch.ones(4)}}, "train": {{"iteration": 1}}}},
                       folder + "/" + ck.checkpoint_name(1))
        real = torch.save
        def slow(obj, f):
            f.write(b"PK partial bytes of a zip")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
            real(obj, f)
        torch.save = slow
        ck.atomic_save({{"format": "edvr_fast", "model": {{"w": torch.zeros(4)}}, "train": {{"iteration": 2}}}},
                       folder + "/" + ck.checkpoint_name(2))
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert ck.checkpoint_name(2) not in names and any(".tmp-" in n for n in names)
    path, state = ck.find_latest(tmp_path)
    assert path.name == ck.checkpoint_name(1) and torch.equal(state["model"]["w"], torch.ones(4))
    ck.prune(tmp_path, keep=3)  # the dead writer's temporary file is cleaned up
    assert not any(".tmp-" in p.name for p in tmp_path.iterdir())


def test_find_latest_skips_corrupt_and_prune_keeps_k(tmp_path):
    for i in (1, 2, 3):
        ck.atomic_save(_state(i), tmp_path / ck.checkpoint_name(i))
    (tmp_path / ck.checkpoint_name(4)).write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="skipping unreadable"):
        path, state = ck.find_latest(tmp_path)
    assert state["train"]["iteration"] == 3
    with pytest.raises(CheckpointError, match="cannot read"):
        ck.load_checkpoint(tmp_path / ck.checkpoint_name(4))
    removed = ck.prune(tmp_path, keep=2, protect={tmp_path / ck.checkpoint_name(1)})
    assert [p.name for p in removed] == [ck.checkpoint_name(2)]
    assert [i for i, _ in ck.list_checkpoints(tmp_path)] == [4, 3, 1]


def test_weights_only_state_is_not_a_training_checkpoint(tmp_path):
    torch.save({"format": "edvr_fast", "model": {}}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="no training state"):
        ck.load_checkpoint(tmp_path / "w.pt")


def test_rng_state_round_trip_weights_only(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = ck.rng_state()
    ck.atomic_save({"rng": state}, tmp_path / "r.pt")
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = torch.load(tmp_path / "r.pt", weights_only=True)["rng"]
    ck.set_rng_state(loaded)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect
