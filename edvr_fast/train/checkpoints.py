"""Training checkpoints: atomic writes (temporary file, fsync, rename), the last K kept, newest-valid lookup,
and RNG states converted to tensors and plain values so `torch.load(weights_only=True)` reads every file.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edvr_fast.errors import CheckpointError

FORMAT = "edvr_fast"  # what edvr_fast.models.load_pretrained recognises
_NAME = re.compile(r"^iter_(\d{8,})\.pt$")
BEST = "best.pt"


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:08d}.pt"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to `path` through a temporary file in the same folder: a crash leaves the old file or
    none, never a truncated one under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(iteration, path) of the periodic checkpoints in `folder`, newest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found, reverse=True)


def prune(folder: str | Path, keep: int, protect: set[Path] | None = None) -> list[Path]:
    """Delete all but the newest `keep` periodic checkpoints (never one in `protect`) and stale temp files."""
    folder = Path(folder)
    removed = []
    for _, p in list_checkpoints(folder)[keep:]:
        if protect and p in protect:
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    for tmp in folder.glob(".*.pt.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)  # left by a killed run
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read one of our training checkpoints (weights-only), or raise CheckpointError saying why not."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path, "check the path given to --resume")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated, not a zip, unpicklable: all mean "not a usable checkpoint"
        raise CheckpointError(f"cannot read the checkpoint ({type(exc).__name__}: {exc})", path,
                              "the file may be truncated; use an older one") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "train" not in obj:
        raise CheckpointError("not an edvr_fast training checkpoint (no training state)", path,
                              "to start from weights only, use a fresh run instead of --resume")
    return obj


def find_latest(folder: str | Path, map_location: Any = "cpu") -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in `folder` that loads, skipping (with a warning) unreadable ones."""
    for _, path in list_checkpoints(folder):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=2)
    return None


# ------------------------------------------------------------------------------------------ RNG states
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states as tensors and plain values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's device only
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["kind"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["cached"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
