"""EDVRParams: the one dataclass that fixes an EDVR architecture (and its padding / offset clamp).

The training config fills it; checkpoints store it as a plain dict (`to_dict` / `from_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edvr_fast.errors import ConfigError

PAD_MODES = ("replicate", "reflect")
SCALES = (1, 2, 4)
# Width of the last upsampling stage, conv_hr and conv_last: fixed at 64 in every published EDVR.
HR_FEAT = 64


@dataclass
class EDVRParams:
    """Hyper-parameters of one EDVR network.

    num_feat: feature width; num_frame: frames in, one out; deformable_groups: offset groups of every
    DCN; num_extract_block / num_reconstruct_block: residual blocks before PCD / after fusion;
    center_frame_idx: the reference frame (None = num_frame // 2); hr_in: input at full resolution,
    features at 1/4 (two stride-2 convs); with_predeblur: pre-deblur pyramid before extraction;
    with_tsa: TSA fusion (else a plain 1x1 conv); scale: output size / input size (1, 2 or 4);
    pad_mode: how frames are padded to the size the pyramid needs (cropped back afterwards);
    max_offset: clamp every DCN offset to [-max_offset, max_offset] pixels of its level (None: no clamp).
    """

    num_feat: int = 64
    num_frame: int = 5
    deformable_groups: int = 8
    num_extract_block: int = 5
    num_reconstruct_block: int = 10
    center_frame_idx: int | None = None
    hr_in: bool = False
    with_predeblur: bool = False
    with_tsa: bool = True
    scale: int = 4
    pad_mode: str = "replicate"
    max_offset: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def center(self) -> int:
        """Index of the reference frame."""
        return self.num_frame // 2 if self.center_frame_idx is None else self.center_frame_idx

    @property
    def pad_multiple(self) -> int:
        """H and W are padded up to a multiple of this (L3 is 1/4 of L1; L1 is 1/4 with hr_in)."""
        return 16 if self.hr_in else 4

    @property
    def num_upsample(self) -> int:
        """Pixel-shuffle x2 stages: log2(scale), plus two to undo the 1/4 feature size of hr_in."""
        return {1: 0, 2: 1, 4: 2}[self.scale] + (2 if self.hr_in else 0)

    def validate(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"EDVRParams.{field}={getattr(self, field)!r}: {why}")

        for field in ("num_feat", "num_frame", "deformable_groups"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                raise bad(field, "must be a positive integer")
        for field in ("num_extract_block", "num_reconstruct_block"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 0:
                raise bad(field, "must be an integer >= 0")
        if self.num_feat % self.deformable_groups:
            raise bad("deformable_groups", f"must divide num_feat={self.num_feat}")
        if self.center_frame_idx is not None and not 0 <= self.center_frame_idx < self.num_frame:
            raise bad("center_frame_idx", f"must be in [0, {self.num_frame - 1}] or None (the middle)")
        if self.scale not in SCALES:
            raise bad("scale", f"must be one of {SCALES}")
        if self.pad_mode not in PAD_MODES:
            raise bad("pad_mode", f"must be one of {PAD_MODES}")
        if self.max_offset is not None and not self.max_offset > 0:
            raise bad("max_offset", "must be a positive number of pixels or None")
        for field in ("hr_in", "with_predeblur", "with_tsa"):
            if not isinstance(getattr(self, field), bool):
                raise bad(field, "must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EDVRParams:
        """Build from a plain dict; unknown keys are an error, missing ones take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown EDVR parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **overrides: Any) -> EDVRParams:
        """A copy with some fields changed (validated); unknown names are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown EDVR parameter(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)
