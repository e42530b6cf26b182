"""The pieces of one optimisation step: Charbonnier loss, parameter groups (DCN learning-rate multiplier),
the TSA-only warm-up mask and an exponential moving average of the weights.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from edvr_fast.config import TrainConfig
from edvr_fast.models import EDVR


def charbonnier(pred: Tensor, gt: Tensor, eps: float = 1e-3, reduction: str = "mean") -> Tensor:
    """sum or mean of sqrt((pred - gt)^2 + eps^2), computed in float32 whatever the autocast dtype."""
    diff = pred.float() - gt.float()
    loss = torch.sqrt(diff * diff + eps * eps)
    return loss.sum() if reduction == "sum" else loss.mean()


def build_optimizer(model: EDVR, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with two groups, "main" and "dcn" (DCN packs and their offset convs, lr * optim.dcn_lr_mult)."""
    o = cfg.optim
    groups = [
        {"params": model.non_dcn_parameters(), "name": "main", "lr_mult": 1.0},
        {"params": model.dcn_parameters(), "name": "dcn", "lr_mult": o.dcn_lr_mult},
    ]
    fused = True if cfg.train.fused_adam else None  # None: PyTorch's choice (foreach on CUDA, loop on CPU)
    return torch.optim.Adam(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, fused=fused)


def set_learning_rates(opt: torch.optim.Optimizer, lr: float, dcn_scale: float) -> None:
    """Each group's lr = schedule lr * its multiplier (times the offset guard's extra DCN scale)."""
    for g in opt.param_groups:
        g["lr"] = lr * g["lr_mult"] * (dcn_scale if g["name"] == "dcn" else 1.0)


class FusionOnly:
    """The TSA warm-up: drops the gradients of every parameter outside fusion before the optimiser step.

    Freezing by requires_grad would change which parameters DDP reduces mid-run; dropping the gradients
    after the (identical on every rank) all-reduce keeps DDP untouched, and Adam skips parameters without
    a gradient, so their moments start only when the phase ends (as with frozen parameters).
    """

    def __init__(self, model: EDVR):
        fusion = {id(p) for p in model.fusion_parameters()}
        self.others = [p for p in model.parameters() if id(p) not in fusion]

    def apply(self) -> None:
        for p in self.others:
            p.grad = None


class EMA:
    """Exponential moving average of a model's weights, updated on the device without host syncs."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema = list(self.model.parameters())
        cur = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema, cur, 1.0 - self.decay)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
