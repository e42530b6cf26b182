"""Shared fixtures for the inference tests: tiny EDVR models with visible, random weights."""

from __future__ import annotations

import pytest
import torch

from edvr_fast.models import EDVR, build


def tiny_model(seed: int = 0, std: float = 0.05, **overrides) -> EDVR:
    """A tiny EDVR whose every weight is random (DCN offsets included, so alignment really moves)."""
    base = dict(num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)
    base.update(overrides)
    model = build("edvr-m-sr4", **base)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * std)
    return model.eval()


@pytest.fixture
def tiny():
    return tiny_model
