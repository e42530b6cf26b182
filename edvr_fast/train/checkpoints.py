"""Training checkpoints: atomic writes (temp file, fsync, rename; a full disk leaves the previous files), the last
K kept, the newest that loads and fits the run, RNG states as tensors so `torch.load(weights_only=True)` reads them.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edvr_fast.errors import CheckpointError, is_out_of_space

FORMAT = "edvr_fast"  # what edvr_fast.models.load_pretrained recognises
_NAME = re.compile(r"^iter_(\d{8,})\.pt$")
BEST = "best.pt"
_WRITING: set[Path] = set()  # temporary files being written now (removed by remove_partial on an abort)


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:08d}.pt"


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save to `path` through a temporary file in the same folder: a crash leaves the old file or
    none, never a truncated one under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _WRITING.add(tmp)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_out_of_space(exc):
            newest = list_checkpoints(path.parent)
            kept = f"the newest complete checkpoint is still {newest[0][1]}" if newest else "no checkpoint was kept"
            raise CheckpointError(f"the disk is full: cannot write the checkpoint (partial file removed; {kept})",
                                  path, "free disk space (or lower checkpoint.keep), then --resume auto") from exc
        raise
    finally:
        _WRITING.discard(tmp)
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def remove_partial() -> None:
    """Delete the temporary files of checkpoints being written now (a process about to exit abruptly)."""
    for tmp in list(_WRITING):
        tmp.unlink(missing_ok=True)


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


def find_latest(folder: str | Path, map_location: Any = "cpu",
                check: Callable[[dict[str, Any]], str | None] | None = None,
                say: Callable[[str], None] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in `folder` that loads and (with `check`) fits the run, skipping (with a warning,
    and through `say` when given) unreadable ones and those for which `check` returns why they do not fit."""
    for _, path in list_checkpoints(folder):
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=2)
            if say is not None:
                say(f"--resume auto: skipping unreadable checkpoint {path}, falling back to the previous one")
            continue
        why = check(state) if check is not None else None
        if why is None:
            return path, state
        msg = f"skipping inconsistent checkpoint {path}: {why}; falling back to the previous one"
        warnings.warn(msg, stacklevel=2)
        if say is not None:
            say(f"--resume auto: {msg}")
    return None


_TRAIN_KEYS = ("model", "optimizer", "iteration", "rng", "data", "best_psnr", "dcn_scale", "rollbacks",
               "world_size")
# Sampler fields that must match for a data position to mean the same samples (see ClipSampler.load_state_dict).
_SAMPLER_KEYS = ("seed", "num_samples", "world_size", "shuffle", "drop_last")


def _tensor_dict_mismatch(got: Any, want: dict[str, torch.Tensor], what: str) -> str | None:
    if not isinstance(got, dict):
        return f"{what} is not a state dict"
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    if missing or extra:
        return f"{what} has {len(missing)} missing key(s) (e.g. {missing[:1]}) and {len(extra)} unexpected"
    for k, v in want.items():
        g = got[k]
        if not isinstance(g, torch.Tensor) or tuple(g.shape) != tuple(v.shape):
            shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
            return f"{what}[{k!r}] has shape {shape}, the model {tuple(v.shape)}"
    return None


def _sampler_of(data: dict[str, Any]) -> dict[str, Any] | None:
    sampler = data.get("loader", {}).get("sampler") if data.get("kind") == "fused" else data.get("sampler")
    return sampler if isinstance(sampler, dict) else None


def inconsistency(state: dict[str, Any], model: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                  data: dict[str, Any], pack_id: str | None = None) -> str | None:
    """Why a loaded training checkpoint does not fit this run (missing keys, other shapes, an optimizer of
    another shape, a data position for another pack / split / seed), or None when resuming from it is safe.
    `model` and `data` are this run's own state dicts, `optimizer` its optimizer; nothing is modified."""
    tr = state.get("train")
    if not isinstance(tr, dict):
        return "no training state"
    missing = [k for k in _TRAIN_KEYS if k not in tr]
    if missing or "model" not in state:
        return f"training state lacks {', '.join(missing or ['model'])}"
    why = _tensor_dict_mismatch(state["model"], model, "model")
    if why is None and tr["model"] is not None:
        why = _tensor_dict_mismatch(tr["model"], model, "raw model")
    if why:
        return why
    opt = tr["optimizer"]
    groups = opt.get("param_groups") if isinstance(opt, dict) else None
    want_groups = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups] != [
            len(g["params"]) for g in want_groups]:
        return "optimizer state has other parameter groups than this model's"
    # State-dict parameter ids number the optimizer's parameters in group order.
    shapes = [tuple(p.shape) for g in optimizer.param_groups for p in g["params"]]
    for pid, st in (opt.get("state") or {}).items():
        if not isinstance(st, dict) or not isinstance(pid, int) or not 0 <= pid < len(shapes):
            return f"optimizer state has an entry for unknown parameter {pid!r}"
        for name, t in st.items():
            if isinstance(t, torch.Tensor) and t.dim() > 0 and tuple(t.shape) != shapes[pid]:
                return f"optimizer {name} of parameter {pid} has shape {tuple(t.shape)}, the parameter {shapes[pid]}"
    d = tr["data"]
    if not isinstance(d, dict) or d.get("kind") != data.get("kind"):
        return f"data state is for the {d.get('kind') if isinstance(d, dict) else '?'} loader, this run uses " \
               f"the {data.get('kind')} loader"
    got_s, want_s = _sampler_of(d), _sampler_of(data)
    if got_s is None or want_s is None:
        return "data state has no sampler position"
    for k in _SAMPLER_KEYS:
        if got_s.get(k) != want_s.get(k):
            return f"sampler state has {k}={got_s.get(k)!r}, this run {want_s.get(k)!r} (another pack, split or seed)"
    if pack_id is not None and tr.get("pack_id") not in (None, pack_id):
        return f"sampler state is for pack {tr['pack_id']}, this run reads pack {pack_id}"
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
