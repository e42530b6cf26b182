"""Test helper: the reference batches (ClipDataset + ClipSampler + default collate) the fused loader must match.

Imported by the loader tests through conftest, which puts this folder on sys.path.
"""

from __future__ import annotations

import torch


def reference_batches(
    params,
    batch_size: int,
    epoch: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = True,
    shuffle: bool = True,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """ClipDataset + ClipSampler + torch's default collate: what the fused loader must reproduce."""
    from edvr_fast.data.dataset import ClipDataset
    from edvr_fast.data.sampler import ClipSampler

    ds = ClipDataset(params)
    sampler = ClipSampler(
        len(ds), shuffle=shuffle, seed=params.sample.seed, rank=rank, world_size=world_size, with_epoch=True
    )
    sampler.set_epoch(epoch)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    return [(b["lq"], b["gt"]) for b in dl]
