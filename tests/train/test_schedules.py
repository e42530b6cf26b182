"""Learning-rate schedules (cosine with restarts, constant) and warm-up, as pure functions of the iteration."""

from __future__ import annotations

import math

import pytest

from edvr_fast.train.schedules import Constant, CosineRestarts


def test_cosine_restarts_values():
    s = CosineRestarts(1.0, [10, 20], [1.0, 0.5], eta_min=0.1)
    assert s.lr(0) == pytest.approx(1.0)
    assert s.lr(5) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the first period
    assert s.lr(10) == pytest.approx(0.1 + 0.5 * 0.9)  # restart at weight 0.5
    assert s.lr(20) == pytest.approx(0.1 + 0.5 * 0.9 * 0.5 * (1 + math.cos(math.pi * 10 / 20)))
    assert s.lr(30) == pytest.approx(0.1) and s.lr(1000) == pytest.approx(0.1)
    assert all(s.lr(i) >= s.lr(i + 1) for i in range(9))


def test_warmup_scales_linearly():
    s, plain = CosineRestarts(2.0, [100], warmup=4), CosineRestarts(2.0, [100])
    for i in range(4):
        assert s.lr(i) == pytest.approx(plain.lr(i) * (i + 1) / 4)
    assert s.lr(4) == pytest.approx(plain.lr(4)) and s.factor(50) == pytest.approx(plain.lr(50) / 2.0)


def test_constant_schedule_with_warmup():
    s = Constant(3e-3, warmup=3)
    assert [s.lr(i) for i in range(5)] == pytest.approx([1e-3, 2e-3, 3e-3, 3e-3, 3e-3])
    assert Constant(3e-3).lr(0) == pytest.approx(3e-3) and Constant(3e-3).factor(10**6) == pytest.approx(1.0)


def test_config_selects_the_schedule():
    from edvr_fast.config import load_config
    from edvr_fast.errors import ConfigError

    assert load_config(None, ["schedule.kind=cosine"]).schedule.kind == "cosine"
    with pytest.raises(ConfigError, match="schedule.kind"):
        load_config(None, ["schedule.kind=linear"])


def test_multistep_drops_at_each_milestone_with_warmup():
    from edvr_fast.train.schedules import MultiStep

    s = MultiStep(1.0, [10, 20], gamma=0.5, warmup=4)
    assert s.lr(0) == pytest.approx(0.25) and s.lr(3) == pytest.approx(1.0)
    assert s.lr(9) == pytest.approx(1.0) and s.lr(10) == pytest.approx(0.5)
    assert s.lr(19) == pytest.approx(0.5) and s.lr(20) == pytest.approx(0.25) and s.lr(10**6) == pytest.approx(0.25)
