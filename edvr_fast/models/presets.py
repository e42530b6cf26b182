"""Named presets for the published EDVR models (paper / official release hyper-parameters) and ours;
`build(name_or_params, **overrides)` makes a model from one.
"""

from __future__ import annotations

from typing import Any

from edvr_fast.errors import ConfigError
from edvr_fast.models.edvr import EDVR
from edvr_fast.models.params import EDVRParams

_M = dict(num_feat=64, num_frame=5, deformable_groups=8, num_extract_block=5, num_reconstruct_block=10)
_L = dict(num_feat=128, num_frame=5, deformable_groups=8, num_extract_block=5, num_reconstruct_block=40)
# Stage-2 models of the NTIRE 2019 release refine a stage-1 output at full resolution: 20 blocks, x1.
_L_STAGE2 = dict(_L, num_reconstruct_block=20, hr_in=True, scale=1)

_PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    "edvr-m-sr4": (dict(_M, scale=4), "EDVR-M, REDS x4 SR (EDVR_M_x4_SR_REDS)"),
    "edvr-m-sr4-notsa": (dict(_M, scale=4, with_tsa=False), "EDVR-M without TSA, REDS x4 SR"),
    "edvr-l-sr4": (dict(_L, scale=4), "EDVR-L, REDS x4 SR (EDVR_REDS_SR_L / EDVR_L_x4_SR_REDS)"),
    "edvr-l-sr4-notsa": (dict(_L, scale=4, with_tsa=False), "EDVR-L without TSA, REDS x4 SR"),
    "edvr-l-sr4-vimeo90k": (dict(_L, num_frame=7, scale=4), "EDVR-L, Vimeo90K x4 SR, 7 frames"),
    "edvr-l-srblur4": (dict(_L, scale=4, with_predeblur=True),
                       "EDVR-L, REDS x4 SR of blurred frames (pre-deblur)"),
    "edvr-l-deblur": (dict(_L, scale=1, with_predeblur=True, hr_in=True), "EDVR-L, REDS deblurring"),
    "edvr-l-deblurcomp": (dict(_L, scale=1, with_predeblur=True, hr_in=True),
                          "EDVR-L, REDS deblurring of compressed frames"),
    "edvr-l-sr4-stage2": (dict(_L_STAGE2), "EDVR-L stage 2 for x4 SR (refines stage-1 output)"),
    "edvr-l-srblur4-stage2": (dict(_L_STAGE2, with_predeblur=True), "EDVR-L stage 2 for SR-blur"),
    "edvr-l-deblur-stage2": (dict(_L_STAGE2, with_predeblur=True), "EDVR-L stage 2 for deblurring"),
    "edvr-l-deblurcomp-stage2": (dict(_L_STAGE2, with_predeblur=True),
                                 "EDVR-L stage 2 for deblurring compressed frames"),
    # Ours, not published: EDVR-M size with pre-deblur and HR input, for quick deblurring experiments.
    "edvr-m-deblur": (dict(_M, scale=1, with_predeblur=True, hr_in=True),
                      "EDVR-M-size deblurring (ours: pre-deblur, HR input)"),
}


def preset_names() -> list[str]:
    """Names accepted by `preset` and `build`."""
    return list(_PRESETS)


def preset_description(name: str) -> str:
    """One line saying which published model a preset reproduces."""
    return _PRESETS[_canonical(name)][1]


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key not in _PRESETS:
        raise ConfigError(f"unknown EDVR preset {name!r}; choose one of {preset_names()}")
    return key


def preset(name: str) -> EDVRParams:
    """The EDVRParams of a named preset (a fresh copy)."""
    return EDVRParams(**_PRESETS[_canonical(name)][0])


def build(name_or_params: str | EDVRParams, **overrides: Any) -> EDVR:
    """A freshly initialised EDVR from a preset name or EDVRParams, with fields overridden."""
    params = preset(name_or_params) if isinstance(name_or_params, str) else name_or_params
    if overrides:
        params = params.replace(**overrides)
    return EDVR(params)
