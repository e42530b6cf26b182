"""Sampler: EDVR boundary policies at both clip ends, pure decisions, splits, DDP shards, resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edvr_fast.data.sampler import ClipSampler, SampleParams, SamplePlan, split_clips, window_indices
from edvr_fast.errors import ConfigError, DatasetError

START = {
    "replicate": [0, 0, 0, 1, 2],
    "reflection": [2, 1, 0, 1, 2],
    "new_info": [4, 3, 0, 1, 2],
    "circle": [3, 4, 0, 1, 2],
}


@pytest.mark.parametrize("policy", sorted(START))
def test_boundary_policies_both_ends(policy: str) -> None:
    n = 30
    assert window_indices(0, n, 5, 1, policy) == START[policy]
    # The last frame mirrors the first: index i -> n-1-i, window order reversed.
    assert window_indices(n - 1, n, 5, 1, policy) == [n - 1 - i for i in reversed(START[policy])]
    assert window_indices(10, n, 5, 1, policy) == [8, 9, 10, 11, 12]


def test_second_frame_and_interval() -> None:
    assert window_indices(1, 30, 5, 1, "reflection") == [1, 0, 1, 2, 3]
    assert window_indices(1, 30, 5, 1, "new_info") == [4, 0, 1, 2, 3]
    assert window_indices(1, 30, 5, 1, "circle") == [4, 0, 1, 2, 3]
    assert window_indices(10, 30, 5, 2, "replicate") == [6, 8, 10, 12, 14]
    assert window_indices(1, 30, 5, 2, "replicate") == [0, 0, 1, 3, 5]
    assert all(0 <= i < 3 for i in window_indices(1, 3, 7, 1, "new_info"))  # short clip clamps
    with pytest.raises(IndexError):
        window_indices(1, 30, 5, 1, "inside")


def _plan(**kw) -> SamplePlan:
    params = SampleParams(**{"gt_size": 8, **kw})
    return SamplePlan(params, [30, 7, 12], [(16, 20, 3), (16, 24, 3), (20, 20, 3)], 2)


def test_one_sample_per_clip_and_centre_no_frame_count_assumed() -> None:
    plan = _plan()
    assert len(plan) == 30 + 7 + 12
    assert plan.locate(0) == (0, 0) and plan.locate(29) == (0, 29) and plan.locate(30) == (1, 0)
    assert plan.locate(48) == (2, 11)
    inside = _plan(boundary="inside")
    assert len(inside) == 26 + 3 + 8
    assert inside.locate(0) == (0, 2) and inside.locate(26) == (1, 2)
    for i in range(len(inside)):
        clip, _ = inside.locate(i)
        assert all(0 <= f < [30, 7, 12][clip] for f in inside.decide(0, i).frames)


def test_inside_picks_only_fitting_intervals() -> None:
    plan = _plan(boundary="inside", interval_list=(1, 3))
    for i in range(len(plan)):
        spec = plan.decide(0, i)
        n = [30, 7, 12][spec.clip]
        assert spec.frames[0] >= 0 and spec.frames[-1] <= n - 1
        assert spec.frames == tuple(
            range(spec.center - 2 * spec.interval, spec.center + 2 * spec.interval + 1, spec.interval)
        )


def test_decide_is_pure_and_covers_choices() -> None:
    plan = _plan(random_reverse=True, interval_list=(1, 2))
    a = [plan.decide(3, i) for i in range(len(plan))]
    b = [_plan(random_reverse=True, interval_list=(1, 2)).decide(3, i) for i in reversed(range(len(plan)))]
    assert a == b[::-1]
    assert a != [plan.decide(4, i) for i in range(len(plan))]
    assert {s.hflip for s in a} == {True, False} and {s.transpose for s in a} == {True, False}
    assert {s.reversed for s in a} == {True, False} and {s.interval for s in a} == {1, 2}
    for s in a:
        t, l, h, w = s.lq_crop
        H, W, _ = plan.lq_shapes[s.clip]
        assert (h, w) == (4, 4) and 0 <= t <= H - 4 and 0 <= l <= W - 4
        assert s.gt_crop == (2 * t, 2 * l, 8, 8)
        mid = s.frames[len(s.frames) // 2]
        assert mid == s.center
        if s.reversed:
            assert s.frames[0] > s.frames[-1] or s.frames[0] == s.frames[-1]


def test_flags_off_and_full_frame() -> None:
    plan = _plan(use_hflip=False, use_rot=False, gt_size=None)
    for i in range(len(plan)):
        s = plan.decide(0, i)
        assert not (s.hflip or s.vflip or s.transpose or s.reversed)
        assert s.lq_crop == (0, 0, *plan.lq_shapes[s.clip][:2])
    # Toggling a flag does not move the other random draws.
    on, off = _plan(), _plan(use_hflip=False)
    assert [on.decide(0, i).lq_crop for i in range(20)] == [off.decide(0, i).lq_crop for i in range(20)]


def test_bad_params() -> None:
    with pytest.raises(ConfigError, match="multiple"):
        _plan(gt_size=9)
    with pytest.raises(DatasetError, match="smaller than the crop"):
        _plan(gt_size=40)
    with pytest.raises(ConfigError, match="odd"):
        _plan(num_frame=4)
    with pytest.raises(ConfigError, match="boundary"):
        _plan(boundary="wrap")


def test_split_by_names_and_fraction() -> None:
    names = [f"clip{i}" for i in range(20)]
    assert split_clips(names, val_clips=["clip3", "clip7"]) == (
        [i for i in range(20) if i not in (3, 7)],
        [3, 7],
    )
    with pytest.raises(ConfigError, match="clip99"):
        split_clips(names, val_clips=["clip99"])
    train, val = split_clips(names, val_fraction=0.25, seed=1)
    assert len(val) == 5 and sorted(train + val) == list(range(20))
    assert split_clips(names, val_fraction=0.25, seed=1) == (train, val)
    # Depends on names, not order: shuffled names give the same validation names.
    shuffled = names[::-1]
    _, val2 = split_clips(shuffled, val_fraction=0.25, seed=1)
    assert {shuffled[i] for i in val2} == {names[i] for i in val}
    assert split_clips(names, val_fraction=0.25, seed=2)[1] != val
    assert split_clips(names) == (list(range(20)), [])


@pytest.mark.parametrize("n,world", [(49, 4), (48, 4), (5, 3)])
def test_ddp_shards_disjoint_and_equal(n: int, world: int) -> None:
    for epoch in range(3):
        shards = []
        for rank in range(world):
            s = ClipSampler(n, seed=7, rank=rank, world_size=world)
            s.set_epoch(epoch)
            shards.append(list(s))
        assert len({len(x) for x in shards}) == 1
        flat = [i for x in shards for i in x]
        assert set(flat) == set(range(n))
        assert len(flat) - len(set(flat)) == (-n) % world  # only the padding repeats
        if (-n) % world == 0:
            for a in range(world):
                for b in range(a + 1, world):
                    assert not set(shards[a]) & set(shards[b])
    s = ClipSampler(n, seed=7)
    e0 = list(s)
    s.set_epoch(1)
    assert list(s) != e0 and sorted(e0) == list(range(n))


def test_drop_last_and_no_shuffle() -> None:
    s = ClipSampler(10, shuffle=False, rank=1, world_size=3, drop_last=True)
    assert list(s) == [1, 4, 7] and len(s) == 3


def test_state_round_trip_mid_epoch() -> None:
    full = ClipSampler(50, seed=3, rank=1, world_size=2)
    full.set_epoch(2)
    expected = list(full)
    s = ClipSampler(50, seed=3, rank=1, world_size=2)
    s.set_epoch(2)
    it = iter(s)
    head = [next(it) for _ in range(9)]
    state = s.state_dict()
    assert state["position"] == 9 and state["epoch"] == 2
    resumed = ClipSampler(50, seed=3, rank=1, world_size=2)
    resumed.load_state_dict(dict(state))
    resumed.set_epoch(2)  # training calls set_epoch again on resume: must not lose the position
    assert len(resumed) == len(expected) - 9
    assert head + list(resumed) == expected
    resumed.set_epoch(3)
    assert len(list(resumed)) == len(expected)
    # An explicit consumed count (what a DataLoader-fed loop knows) wins over the read-ahead position.
    assert s.state_dict(consumed=4)["position"] == 4
    with pytest.raises(ConfigError, match="world_size"):
        ClipSampler(50, seed=3, world_size=4).load_state_dict(state)


def test_with_epoch_pairs() -> None:
    s = ClipSampler(4, with_epoch=True)
    s.set_epoch(5)
    assert all(e == 5 for e, _ in s)


def test_documented_draw_contract() -> None:
    """The fused loader relies on this: seven doubles from default_rng([seed, epoch, index, 0])."""
    plan = _plan(seed=11, random_reverse=True, interval_list=(1, 2, 3))
    for index in (0, 17, 40):
        u = np.random.default_rng([11, 6, index, 0]).random(7)
        s = plan.decide(6, index)
        clip, center = plan.locate(index)
        H, W, _ = plan.lq_shapes[clip]
        assert s.interval == (1, 2, 3)[int(u[0] * 3)]
        assert s.reversed == (u[1] < 0.5)
        assert s.lq_crop[:2] == (int(u[2] * (H - 4 + 1)), int(u[3] * (W - 4 + 1)))
        assert (s.hflip, s.vflip, s.transpose) == (u[4] < 0.5, u[5] < 0.5, u[6] < 0.5)
        window = window_indices(center, [30, 7, 12][clip], 5, s.interval, "reflection")
        assert list(s.frames) == (window[::-1] if s.reversed else window)


def test_params_dataclass_fields() -> None:
    fields = {f.name for f in dataclasses.fields(SampleParams)}
    expected = {
        "num_frame",
        "interval_list",
        "boundary",
        "random_reverse",
        "gt_size",
        "use_hflip",
        "use_rot",
        "seed",
    }
    assert expected <= fields
