"""What a run reports: a JSON-lines event log (always), TensorBoard scalars (when installed) and console lines
printed above the progress bar; only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # JSON has no NaN/Inf; keep them readable
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


class RunLog:
    """`event(kind, **fields)` appends {"time", "event", ...} to log.jsonl; `scalars` also go to TensorBoard."""

    def __init__(self, folder: Path | None, tensorboard: str = "auto", enabled: bool = True):
        self.enabled = enabled and folder is not None
        self.bar: tqdm | None = None
        self.tb = None
        self.tb_notice = ""
        self.path = folder / "log.jsonl" if self.enabled and folder is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
            if tensorboard != "off":
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(folder / "tensorboard"))
                except ImportError:
                    self.tb_notice = "TensorBoard not installed (pip install edvr_fast[tensorboard]): JSON log only"
                    if tensorboard == "on":
                        self.tb_notice += " (log.tensorboard=on was requested)"

    def event(self, kind: str, **fields: Any) -> None:
        if not self.enabled:
            return
        rec = {"time": round(time.time(), 3), "event": kind, **_jsonable(fields)}
        self._file.write(json.dumps(rec) + "\n")

    def scalars(self, step: int, prefix: str, values: dict[str, float]) -> None:
        if self.tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{prefix}/{k}", v, step)

    def say(self, message: str) -> None:
        """A console line (stderr) that does not break the progress bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.tb is not None:
            self.tb.close()
        if self.enabled:
            self._file.close()
            self.enabled = False
