"""Training EDVR: `python -m edvr_fast.train` (CLI), `Trainer` (the loop), checkpoints, schedules, logs.

`run(cfg)` trains one configuration in this process (or this rank under torchrun) and returns a RunResult.
"""

from __future__ import annotations

from pathlib import Path

from edvr_fast.config import TrainConfig


def run(cfg: TrainConfig, out: str | Path | None = None, resume: str | None = None, progress: bool = False):
    """Train `cfg`, writing to `out`; returns the loop's RunResult (paths, final validation, iterations)."""
    from edvr_fast.train import distributed
    from edvr_fast.train.loop import Trainer

    try:
        return Trainer(cfg, out=out, resume=resume, progress=progress).run()
    finally:
        distributed.shutdown()


__all__ = ["run"]
