"""The default run (`python -m edvr_fast.train`, synthetic video deblurring), shortened: it must learn,
i.e. end clearly above the identity baseline (the blurred input frame against the sharp GT)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edvr_fast.train import checkpoints as ck


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="known gap (issue 7 open): the default synthetic deblurring run ends at the "
                   "identity baseline (+0.02 dB after 300 iterations); remove this marker when it learns")
def test_shortened_default_run_beats_identity(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edvr_fast.train", "--out", str(tmp_path), "--no-progress",
                        "--set", "train.iters=80", "--set", "val.every=0", "--set", "val.max_samples=8",
                        "--set", "log.every=20"],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    state = ck.load_checkpoint(tmp_path / "checkpoints" / ck.checkpoint_name(80))
    val = state["metrics"]
    assert val["psnr"] > val["identity_psnr"] + 0.3, val
    assert "vs identity" in r.stdout and "python -m edvr_fast.infer" in r.stdout
    assert "DCN kernel" in r.stderr and len(list((tmp_path / "samples").rglob("*.png"))) == 4
