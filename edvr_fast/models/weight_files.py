"""Reading and writing weight files without running code from them: PyTorch files through torch's
weights-only unpickler plus a documented allow-list of metadata types, and safetensors files.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from edvr_fast.errors import CheckpointError

FORMAT = "edvr_fast"
SAFETENSORS_FORMAT_VERSION = "1"
SAFETENSORS_SUFFIX = ".safetensors"


class Discarded:
    """Stands in for an allow-listed metadata object: built from the pickle's arguments without running
    the real class's code, and holding nothing. Weights are never of this type, so a state dict that
    contains one is rejected as "no state dict" by the caller."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Discarded:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<discarded metadata>"


# Globals that torch's weights-only unpickler refuses but that the metadata of published EDVR files
# (mmagic / mmediting / mmengine checkpoints) refers to. Each is replaced by `Discarded`: the name is
# accepted, the real function or class is never called, and the value is dropped. Why each one:
_METADATA_GLOBALS = {
    # numpy scalars in `meta` and `message_hub` (iteration counts, seeds, learning rates): numpy pickles
    # a scalar as scalar(dtype, raw bytes), the bytes through _codecs.encode under pickle protocol 2.
    "numpy.core.multiarray.scalar": "numpy scalar (numpy < 2 name)",
    "numpy._core.multiarray.scalar": "numpy scalar (numpy >= 2 name)",
    "_codecs.encode": "the raw bytes of a numpy scalar (protocol 2)",
    "numpy.dtype": "the dtype of a numpy scalar or array",
    # numpy arrays: mmengine's HistoryBuffer keeps its logged values in arrays.
    "numpy.core.multiarray._reconstruct": "numpy array (numpy < 2 name)",
    "numpy._core.multiarray._reconstruct": "numpy array (numpy >= 2 name)",
    "numpy.ndarray": "numpy array",
    # mmengine >= 0.3 saves the runner's message hub (logged loss/lr history) beside the weights.
    "mmengine.logging.history_buffer.HistoryBuffer": "mmengine's logged-scalar history",
}


def metadata_allow_list() -> dict[str, str]:
    """The globals accepted (and discarded) in PyTorch weight files, with why each is needed."""
    return dict(_METADATA_GLOBALS)


def _safe_globals() -> list[tuple[type, str]]:
    return [(Discarded, name) for name in _METADATA_GLOBALS]


def is_safetensors(path: Path) -> bool:
    """True for a safetensors file: an 8-byte little-endian header length, then a JSON header."""
    if path.suffix == SAFETENSORS_SUFFIX:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < (1 << 30)


def _refused_globals(path: Path) -> list[str]:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # an unreadable file: the caller reports the original error
        return []
    return sorted(set(names) - set(_METADATA_GLOBALS))


def read_torch_file(path: Path, map_location: Any) -> Any:
    """torch.load(weights_only=True) with the metadata allow-list; never a full unpickle."""
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_globals(path)
        what = f"it holds objects of {', '.join(refused)}" if refused else str(exc).splitlines()[0]
        raise CheckpointError(
            f"not a weights-only checkpoint: {what}; building them would run code from the file, so "
            "it is not read (only tensors, plain containers and the metadata types listed in "
            "edvr_fast.models.weight_files are)", path=path,
            hint="re-save only the weights where the file's packages are installed and you trust it: "
                 "torch.save(torch.load(f, weights_only=False)['state_dict'], 'weights.pth')") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the checkpoint ({exc})", path=path,
                              hint="the file may be truncated or not a PyTorch file") from exc


def read_safetensors(path: Path, map_location: Any) -> dict[str, Any]:
    """The tensors of a safetensors file; with our metadata, as our checkpoint format (params + model)."""
    try:
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file
    except ImportError as exc:  # a declared dependency; only a broken install lacks it
        raise CheckpointError("reading safetensors files needs the safetensors package", path=path,
                              hint="pip install safetensors") from exc
    device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the safetensors file ({exc})", path=path,
                              hint="the file may be truncated or not a safetensors file") from exc
    if meta.get("format") != FORMAT:
        return tensors  # another tool's file: a bare state dict, its layout detected from the keys
    if meta.get("format_version") != SAFETENSORS_FORMAT_VERSION:
        raise CheckpointError(f"edvr_fast safetensors format_version {meta.get('format_version')!r} is not "
                              f"{SAFETENSORS_FORMAT_VERSION!r}", path=path,
                              hint="read it with the edvr_fast version that wrote it")
    try:
        params = json.loads(meta["model_params"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"edvr_fast safetensors metadata without valid model_params ({exc})",
                              path=path) from exc
    return {"format": FORMAT, "model_params": params, "model": tensors}


def read_weights(path: str | Path, map_location: Any = "cpu") -> Any:
    """The contents of a PyTorch or safetensors weight file (see `read_torch_file`, `read_safetensors`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path=path, hint="check the path")
    if is_safetensors(path):
        return read_safetensors(path, map_location)
    return read_torch_file(path, map_location)


def write_safetensors(sd: dict[str, Tensor], params: dict[str, Any], path: str | Path) -> Path:
    """Write `sd` with our architecture parameters in the metadata, atomically (temporary name, rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}
    meta = {"format": FORMAT, "format_version": SAFETENSORS_FORMAT_VERSION,
            "model_params": json.dumps(params, sort_keys=True)}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
