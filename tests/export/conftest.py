"""Shared fixtures for the export tests: tiny EDVR parameters and weights with a visible effect."""

from __future__ import annotations

import pytest
import torch

from edvr_fast.models import EDVRParams


def tiny_params(**overrides) -> EDVRParams:
    base = dict(num_feat=8, num_frame=3, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)
    base.update(overrides)
    return EDVRParams(**base)


def randomize(model: torch.nn.Module, std: float = 0.1, seed: int = 0) -> None:
    """Random weights everywhere (DCN offset convs start at zero, which would hide a wrong offset layout)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in model.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * std)


@pytest.fixture
def tiny():
    return tiny_params


@pytest.fixture
def scramble():
    return randomize
