"""Building blocks of `python -m edvr_fast.infer`: tiling with blended seams, x8 self-ensemble,
the streaming clip restorer, and frame/video sources and sinks.
"""

from __future__ import annotations

from edvr_fast.inference.engine import RestoreOptions, Restorer
from edvr_fast.inference.ensemble import ensemble_forward
from edvr_fast.inference.tiling import TilePlan, default_overlap, forward_tiled, plan_axis

__all__ = [
    "RestoreOptions", "Restorer", "TilePlan", "default_overlap", "ensemble_forward", "forward_tiled", "plan_axis",
]
