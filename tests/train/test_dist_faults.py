"""Distributed faults under torchrun on CPU (gloo, 2 processes): a rank killed mid-run is restarted by elastic
torchrun and `--resume auto` ends on bitwise the weights of an uninterrupted run; a rank that hangs is named
by the dist.timeout_s watchdog, every rank exits non-zero and no partial checkpoint is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from trainkit import tiny_dict

from edvr_fast.train import checkpoints as ck
from edvr_fast.train.distributed import FAULT_ENV

ELASTIC = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "--max-restarts=1", "--monitor-interval=0.5"]
ITERS, EVERY, KILL_AT = 7, 3, 5  # checkpoints at 3, 6, 7; rank 1 dies on reaching step 5 (after 3's)


def _train(tmp_path: Path, out: Path, fault: str | None, timeout_s: float = 60.0,
           launcher: list[str] = ELASTIC) -> subprocess.CompletedProcess:
    cfg = tmp_path / "tiny.yml"
    cfg.write_text(yaml.safe_dump(tiny_dict(train={"iters": ITERS}, log={"every": 2, "progress": False},
                                            checkpoint={"every": EVERY, "keep": 5}, dist={"timeout_s": timeout_s})))
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    env["OMP_NUM_THREADS"] = "1"  # two processes on a shared machine; also the same threads in both runs
    if fault:
        env[FAULT_ENV] = fault
    cmd = launcher + ["-m", "edvr_fast.train", "--config", str(cfg), "--out", str(out), "--resume", "auto"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _events(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines() if x]


@pytest.mark.slow
def test_killed_rank_restarts_and_resume_auto_matches_an_uninterrupted_run_bitwise(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    r = _train(tmp_path, clean, None)
    assert r.returncode == 0, r.stderr[-3000:]
    t0 = time.monotonic()
    r = _train(tmp_path, killed, f"kill:1:{KILL_AT}")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"rank 1 kills at step {KILL_AT}" in r.stderr  # the fault really fired in the first attempt
    starts = [e for e in _events(killed) if e["event"] == "start"]
    resumes = [e for e in _events(killed) if e["event"] == "resume"]
    assert len(starts) == 2, "torchrun did not restart the group"
    assert [e["iteration"] for e in resumes] == [EVERY], resumes  # the newest checkpoint before the death
    for it in (EVERY, 2 * EVERY, ITERS):  # the same checkpoint schedule, every checkpoint bitwise the same
        a = ck.load_checkpoint(clean / "checkpoints" / ck.checkpoint_name(it))
        b = ck.load_checkpoint(killed / "checkpoints" / ck.checkpoint_name(it))
        assert a["model"].keys() == b["model"].keys()
        for k in a["model"]:
            assert torch.equal(a["model"][k], b["model"][k]), f"iteration {it}: {k} differs"
        sa, sb = a["train"]["optimizer"]["state"], b["train"]["optimizer"]["state"]
        assert sa.keys() == sb.keys()
        for pid in sa:
            for name in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(sa[pid][name], sb[pid][name]), f"iteration {it}: Adam {name} of {pid} differs"
        assert a["train"]["data"] == b["train"]["data"]
    print(f"killed-and-restarted run: {took:.1f} s")


@pytest.mark.slow
def test_hung_rank_is_named_within_dist_timeout(tmp_path):
    out = tmp_path / "hung"
    t0 = time.monotonic()
    r = _train(tmp_path, out, f"hang:1:{KILL_AT}", timeout_s=3.0,
               launcher=[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"])
    took = time.monotonic() - t0
    assert r.returncode != 0
    assert f"rank 1 did not reach the all-reduce of step {KILL_AT} within 3 s" in r.stderr, r.stderr[-3000:]
    assert "rank 1 stopping:" in r.stderr  # the hung rank was told to go, not left to torchrun's SIGKILL
    assert "Traceback" not in r.stderr.split("rank 1 did not reach")[0][-2000:]
    events = [e for e in _events(out) if e["event"] == "dist_timeout"]
    assert len(events) == 1 and "rank 1 did not reach" in events[0]["message"]
    folder = out / "checkpoints"
    assert [i for i, _ in ck.list_checkpoints(folder)] == [EVERY]  # the one before the hang, complete
    ck.load_checkpoint(folder / ck.checkpoint_name(EVERY))
    assert not list(folder.glob(".*tmp*")), "a partial checkpoint was left"
    print(f"hung run stopped after {took:.1f} s")


def test_remove_partial_deletes_the_checkpoint_being_written(tmp_path, monkeypatch):
    """What a rank stopped by the watchdog runs before os._exit: no temporary checkpoint file stays behind."""
    seen = []

    def save_then_abort(obj, f):
        f.write(b"half a checkpoint")
        seen.extend(tmp_path.glob(".*.tmp-*"))
        ck.remove_partial()
        raise KeyboardInterrupt  # stands in for the process ending here

    monkeypatch.setattr(ck.torch, "save", save_then_abort)
    with pytest.raises(KeyboardInterrupt):
        ck.atomic_save({"x": 1}, tmp_path / ck.checkpoint_name(3))
    assert len(seen) == 1 and not seen[0].exists()
    assert list(tmp_path.iterdir()) == [] and not ck._WRITING


def test_fault_spec_and_timeouts(monkeypatch):
    from edvr_fast.errors import ConfigError
    from edvr_fast.train import distributed

    monkeypatch.setenv(FAULT_ENV, "kill:1:5")
    distributed.fault_point(0, 5)  # another rank, another step: nothing happens
    distributed.fault_point(1, 4)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    distributed.fault_point(1, 5)  # a restarted group runs clean
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    monkeypatch.setenv(FAULT_ENV, "explode:1")
    with pytest.raises(ConfigError, match="kill:RANK:STEP"):
        distributed.fault_point(1, 5)
    # gloo's own (opaque) timeout comes after the watchdog's named one
    assert distributed.collective_timeout(3.0) == 13.0 and distributed.collective_timeout(1800) == 1980
