"""Learning-rate schedules as pure functions of the iteration: cosine annealing with restarts, step decay at
milestones, or a constant rate, each with an optional linear warm-up; `build` picks one from the config.

Being pure makes resume exact: the scheduler state is just the iteration counter.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any


def _warm(value: float, it: int, warmup: int) -> float:
    return value * (it + 1) / warmup if warmup and it < warmup else value


class Constant:
    """lr(it) = base_lr after a linear warm-up over the first `warmup` iterations (from base / warmup)."""

    def __init__(self, base_lr: float, warmup: int = 0):
        self.base_lr, self.warmup = float(base_lr), int(warmup)

    def factor(self, it: int) -> float:
        return self.lr(it) / self.base_lr

    def lr(self, it: int) -> float:
        return _warm(self.base_lr, it, self.warmup)


class CosineRestarts:
    """lr(it) = eta_min + w_i * (base - eta_min) * (1 + cos(pi * t / P_i)) / 2 within period i, t its offset.

    `periods` P_i and restart `weights` w_i (None: all 1) follow each other; after the last period the
    rate stays at eta_min. A linear warm-up over the first `warmup` iterations scales the rate from
    1 / warmup up to 1 (it multiplies, so restarts and warm-up compose).
    """

    def __init__(self, base_lr: float, periods: Sequence[int], weights: Sequence[float] | None = None,
                 eta_min: float = 0.0, warmup: int = 0):
        self.base_lr, self.eta_min, self.warmup = float(base_lr), float(eta_min), int(warmup)
        self.periods = [int(p) for p in periods]
        self.weights = [float(w) for w in weights] if weights is not None else [1.0] * len(self.periods)
        if len(self.weights) != len(self.periods):
            raise ValueError("one restart weight per period")

    def factor(self, it: int) -> float:
        """lr(it) / base_lr (1.0 means the configured learning rate)."""
        return self.lr(it) / self.base_lr

    def lr(self, it: int) -> float:
        start = 0
        value = self.eta_min
        for period, weight in zip(self.periods, self.weights):
            if it < start + period:
                t = it - start
                cos = 0.5 * (1 + math.cos(math.pi * t / period))
                value = self.eta_min + weight * (self.base_lr - self.eta_min) * cos
                break
            start += period
        return _warm(value, it, self.warmup)


class MultiStep:
    """lr(it) = base_lr * gamma ** (number of milestones <= it): the rate drops by gamma once iteration
    `it` reaches each milestone (PyTorch's / BasicSR's MultiStepLR), times the linear warm-up factor."""

    def __init__(self, base_lr: float, milestones: Sequence[int], gamma: float, warmup: int = 0):
        self.base_lr, self.gamma, self.warmup = float(base_lr), float(gamma), int(warmup)
        self.milestones = sorted(int(m) for m in milestones)

    def factor(self, it: int) -> float:
        return self.lr(it) / self.base_lr

    def lr(self, it: int) -> float:
        return _warm(self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, it), it, self.warmup)


def build(cfg: Any) -> Constant | CosineRestarts | MultiStep:
    """The schedule a TrainConfig describes (`schedule.kind` with its keys, `optim.lr`, `train.iters`)."""
    sc, lr = cfg.schedule, cfg.optim.lr
    if sc.kind == "constant":
        return Constant(lr, sc.warmup_iters)
    if sc.kind == "multistep":
        return MultiStep(lr, sc.milestones or (), sc.gamma, sc.warmup_iters)
    return CosineRestarts(lr, sc.periods or (cfg.train.iters,), sc.restart_weights, sc.eta_min, sc.warmup_iters)
