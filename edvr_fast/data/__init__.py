"""Dataset room: scan clips on disk, pack them to LMDB + meta.json, read them back, sample, reference Dataset.

Names load on first access, so `import edvr_fast` never imports lmdb or OpenCV; `scan()` and `pack()`
live in their same-named submodules (`from edvr_fast.data.scan import scan`).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "scan_frames": "edvr_fast.data.scan",
    "ScanResult": "edvr_fast.data.scan",
    "ClipSource": "edvr_fast.data.scan",
    "read_clip_frames": "edvr_fast.data.frames",
    "natural_key": "edvr_fast.data.frames",
    "load_meta": "edvr_fast.data.meta",
    "PackMeta": "edvr_fast.data.meta",
    "ClipStore": "edvr_fast.data.store",
    "SampleParams": "edvr_fast.data.sampler",
    "SampleSpec": "edvr_fast.data.sampler",
    "SamplePlan": "edvr_fast.data.sampler",
    "ClipSampler": "edvr_fast.data.sampler",
    "split_clips": "edvr_fast.data.sampler",
    "DatasetParams": "edvr_fast.data.dataset",
    "ClipDataset": "edvr_fast.data.dataset",
    "FusedClipLoader": "edvr_fast.data.loader",
    "DegradeParams": "edvr_fast.data.degrade_random",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edvr_fast.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
