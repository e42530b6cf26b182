"""Loading EDVR weights: our checkpoints, safetensors, the original EDVR / BasicSR / mmagic files
(auto-detected, architecture inferred from keys and shapes); exporting our weights in those layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from edvr_fast.errors import CheckpointError, ConfigError
from edvr_fast.models import layouts, weight_files
from edvr_fast.models.edvr import EDVR
from edvr_fast.models.params import EDVRParams
from edvr_fast.models.presets import preset as get_preset

FORMAT = weight_files.FORMAT
_LIST_LIMIT = 12


def unwrap(obj: Any, path: str | Path = "checkpoint") -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """(state dict, our stored model params or None) from any supported container."""
    params = None
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        if "model" not in obj:
            raise CheckpointError("edvr_fast checkpoint without a 'model' entry", path=path)
        params, obj = obj.get("model_params"), obj["model"]
    elif isinstance(obj, Mapping):
        # BasicSR stores {"params": ..., "params_ema": ...}; prefer the EMA weights when present.
        # mmagic / mmediting store {"meta": ..., "state_dict": {"generator.<key>": ...}, ...}.
        for key in ("params_ema", "params", "state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError("no state dict found (expected a dict of tensors, BasicSR 'params'/"
                              "'params_ema', or an edvr_fast checkpoint)", path=path)
    return layouts.strip_prefixes(obj), params


def _listing(title: str, names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    more = f" ... and {len(names) - _LIST_LIMIT} more" if len(names) > _LIST_LIMIT else ""
    return f"\n  {title} ({len(names)}): {shown}{more}"


def convert_state_dict(sd: Mapping[str, Tensor], layout: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Rename a state dict of `layout` into ours; also returns our name -> their name."""
    ours, source = {}, {}
    for key, value in sd.items():
        new = layouts.to_ours(key, layout)
        new = key if new is None else new  # unknown: kept under its own name, reported as unexpected
        if new in ours:
            raise CheckpointError(f"keys {source[new]!r} and {key!r} both map to {new!r}")
        ours[new], source[new] = value, key
    return ours, source


def load_state_dict_checked(model: EDVR, sd: Mapping[str, Tensor], source: Mapping[str, str] | None = None,
                            path: str | Path = "state dict", layout: str = layouts.OURS) -> None:
    """Load strictly; on any missing, unexpected or mis-shaped key raise one CheckpointError listing them."""
    source = source or {}
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [source.get(k, k) for k in sd if k not in expected]
    shapes = [f"{source.get(k, k)} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
              for k, v in expected.items() if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or shapes:
        their = [layouts.from_ours(k, layout, model.params) or k for k in missing]
        msg = f"weights ({layout} layout) do not fit EDVR({model.params})"
        if missing:
            msg += _listing("missing", their)
        if unexpected:
            msg += _listing("unexpected", unexpected)
        if shapes:
            msg += _listing("shape mismatch (file vs model)", shapes)
        raise CheckpointError(msg, path=path, hint="pick the matching preset= or let it be inferred")
    model.load_state_dict(dict(sd), strict=True)


def _resolve_params(preset: str | EDVRParams | None, stored: dict[str, Any] | None,
                    sd: Mapping[str, Tensor], path: Path) -> EDVRParams:
    if isinstance(preset, EDVRParams):
        return preset
    if isinstance(preset, str):
        return get_preset(preset)
    if stored is not None:
        try:
            return EDVRParams.from_dict(dict(stored))
        except ConfigError as exc:
            raise CheckpointError(f"stored model_params are invalid: {exc}", path=path) from exc
    return layouts.infer_params(sd, where=str(path))


def load_pretrained(path: str | Path, preset: str | EDVRParams | None = None, map_location: Any = "cpu",
                    **overrides: Any) -> EDVR:
    """An EDVR with the weights of `path`, in eval mode.

    Accepts our checkpoints ({"format": "edvr_fast", "model_params", "model"}) and safetensors files
    (ours carry the params in their metadata), bare state dicts in our naming, the original EDVR
    repository's files, BasicSR's ("params" / "params_ema") and mmagic's EDVRNet checkpoints
    ("state_dict" with `generator.` keys), with or without `module.` prefixes; the layout is detected
    from the keys. Nothing in a file is executed: see `edvr_fast.models.weight_files`. The architecture comes from
    `preset` (a name or EDVRParams), else from the checkpoint's stored params, else is inferred from
    the keys and shapes. `overrides` change EDVRParams fields (e.g. pad_mode, max_offset).
    """
    path = Path(path)
    sd, stored = unwrap(weight_files.read_weights(path, map_location), path)
    layout = layouts.detect_layout(sd)
    if layout is None:
        raise CheckpointError(f"not an EDVR state dict (no PCD alignment keys); first keys: {list(sd)[:5]}",
                              path=path)
    ours, source = convert_state_dict(sd, layout)
    params = _resolve_params(preset, stored, ours, path)
    if overrides:
        params = params.replace(**overrides)
    model = EDVR(params)
    load_state_dict_checked(model, ours, source, path, layout)
    return model.eval()


def export_state_dict(model: EDVR, layout: str = layouts.OURS) -> dict[str, Tensor]:
    """The model's weights named as `layout` ("edvr_fast", "original", "basicsr", "mmagic") would name them.

    Raises CheckpointError when that implementation cannot express the architecture (it only has two
    upsampling stages: x4, or x1 with hr_in; BasicSR has no hr_in without pre-deblur; mmagic's EDVRNet
    is x4 without pre-deblur or hr_in).
    """
    if layout not in layouts.LAYOUTS:
        raise CheckpointError(f"unknown layout {layout!r}; choose one of {layouts.LAYOUTS}")
    p = model.params
    if layout != layouts.OURS and p.num_upsample != 2:
        raise CheckpointError(f"the {layout} EDVR has exactly two x2 upsampling stages; "
                              f"scale={p.scale} with hr_in={p.hr_in} needs {p.num_upsample}")
    out = {}
    for key, value in model.state_dict().items():
        name = layouts.from_ours(key, layout, p)
        if name is None:
            raise CheckpointError(f"the {layout} EDVR has no equivalent of {key!r} (hr_in={p.hr_in}, "
                                  f"with_predeblur={p.with_predeblur})")
        out[name] = value
    return out


def save_safetensors(model: EDVR, path: str | Path) -> Path:
    """Our weights and architecture in one safetensors file; `load_pretrained` reads it with no preset."""
    return weight_files.write_safetensors(model.state_dict(), model.params.to_dict(), path)
