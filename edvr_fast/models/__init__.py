"""EDVR models: the network (`EDVR`, `EDVRParams`), presets of the published models, and
`load_pretrained` for our checkpoints, safetensors and the original EDVR / BasicSR / mmagic weight files.
"""

from __future__ import annotations

from edvr_fast.models.checkpoints import export_state_dict, load_pretrained, save_safetensors
from edvr_fast.models.edvr import EDVR
from edvr_fast.models.params import EDVRParams
from edvr_fast.models.presets import build, preset, preset_description, preset_names
from edvr_fast.models.receptive import receptive_field, receptive_radius

__all__ = [
    "EDVR", "EDVRParams", "build", "export_state_dict", "load_pretrained", "preset", "preset_description",
    "preset_names", "receptive_field", "receptive_radius", "save_safetensors",
]
