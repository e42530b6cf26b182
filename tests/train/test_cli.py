"""`python -m edvr_fast.train` as a user runs it: errors without tracebacks, SIGTERM saves and exits cleanly,
and the DDP cases through torchrun on CPU (gloo): disjoint data per rank, and a dead rank ends the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from trainkit import tiny_dict

from edvr_fast.train import checkpoints as ck

TRAIN = [sys.executable, "-m", "edvr_fast.train"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]


def _config(tmp_path: Path, **sections) -> str:
    f = tmp_path / "tiny.yml"
    f.write_text(yaml.safe_dump(tiny_dict(**sections)))
    return str(f)


def _wait_for_event(log: Path, kind: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and any(json.loads(x)["event"] == kind for x in log.read_text().splitlines() if x):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        time.sleep(0.2)
    raise AssertionError(f"no {kind} event in {log} after {timeout}s")


def test_config_error_is_one_line_and_nonzero(tmp_path):
    r = subprocess.run(TRAIN + ["--set", "optim.lrr=1", "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and "optim.lrr" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(TRAIN + ["--print-config", "--set", "train.iters=7"], capture_output=True, text=True)
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["train"]["iters"] == 7


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    cfg = _config(tmp_path, train={"iters": 100000}, log={"every": 1, "progress": False},
                  checkpoint={"every": 100000, "keep": 2})
    proc = subprocess.Popen(TRAIN + ["--config", cfg, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_event(out / "log.jsonl", "train", proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "stopped by signal" in stderr and "--resume auto" in stderr
    [(it, path)] = ck.list_checkpoints(out / "checkpoints")
    assert 0 < it < 100000 and ck.load_checkpoint(path)["train"]["iteration"] == it
    assert "checkpoint:" in stdout


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _local_rank(pid: int) -> int | None:
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"LOCAL_RANK="):
            return int(item.split(b"=", 1)[1])
    return None


@pytest.mark.slow
def test_ddp_two_ranks_see_disjoint_data(tmp_path):
    out = tmp_path / "run"
    cfg = _config(tmp_path, train={"iters": 4}, log={"every": 2, "progress": False, "trace_samples": True},
                  checkpoint={"every": 4, "keep": 2})
    r = subprocess.run(TORCHRUN + ["-m", "edvr_fast.train", "--config", cfg, "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = []
    for rank in (0, 1):
        lines = (out / f"samples_rank{rank}.txt").read_text().split("\n")
        seen.append({key for line in lines if line for key in line.split()[1:]})
        assert len([line for line in lines if line]) == 4
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    state = ck.load_checkpoint(out / "checkpoints" / ck.checkpoint_name(4))
    assert state["train"]["world_size"] == 2
    starts = [x for x in (out / "log.jsonl").read_text().splitlines() if json.loads(x)["event"] == "start"]
    assert len(starts) == 1 and json.loads(starts[0])["world_size"] == 2  # rank 0 alone logs
    assert r.stdout.count("checkpoint:") == 1


@pytest.mark.slow
def test_ddp_dead_rank_ends_the_job(tmp_path):
    out = tmp_path / "run"
    cfg = _config(tmp_path, train={"iters": 100000}, log={"every": 1, "progress": False},
                  checkpoint={"every": 100000, "keep": 2}, dist={"timeout_s": 30.0})
    proc = subprocess.Popen(TORCHRUN + ["-m", "edvr_fast.train", "--config", cfg, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_event(out / "log.jsonl", "train", proc)
        victims = [p for p in _children(proc.pid) if _local_rank(p) == 1]
        assert victims, "rank 1 not found among torchrun's children"
        t0 = time.monotonic()
        os.kill(victims[0], signal.SIGKILL)
        proc.communicate(timeout=120)
        assert proc.returncode != 0
        assert time.monotonic() - t0 < 120
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_torch_load_weights_only_reads_cli_checkpoint(tmp_path):
    out = tmp_path / "run"
    cfg = _config(tmp_path, train={"iters": 2}, checkpoint={"every": 2, "keep": 1})
    r = subprocess.run(TRAIN + ["--config", cfg, "--out", str(out), "--no-progress"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    state = torch.load(out / "checkpoints" / ck.checkpoint_name(2), weights_only=True)
    assert state["format"] == "edvr_fast" and state["model_params"]["num_feat"] == 8
    assert "python -m edvr_fast.infer --checkpoint" in r.stdout and (out / "samples").is_dir()
