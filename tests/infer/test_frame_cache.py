"""The per-frame feature cache: EDVR's split equals its forward, and the cached restorer equals the whole
forward per window with every boundary policy, with tiling, with the self-ensemble and with both."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edvr_fast.data.sampler import BOUNDARIES
from edvr_fast.inference.engine import RestoreOptions, Restorer
from edvr_fast.models import EDVR


def _frames(n: int, h: int = 12, w: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _count_frames(model: EDVR) -> list[int]:
    """Wraps model.frame_features to record how many frames each call computes."""
    calls: list[int] = []
    inner = model.frame_features

    def counted(frames):
        calls.append(int(frames.shape[0]))
        return inner(frames)

    model.frame_features = counted  # type: ignore[method-assign]
    return calls


@pytest.mark.parametrize("overrides", [dict(), dict(hr_in=True, with_predeblur=True, scale=1), dict(with_tsa=False)])
def test_per_frame_and_per_window_parts_compose_to_forward(tiny, overrides):
    model = tiny(**overrides)
    x = torch.rand(2, 3, 3, 13, 18)  # not a multiple of 4 (or 16): the padding and the crop are exercised
    with torch.no_grad():
        whole = model(x)
        frames = model.pad_frames(x.reshape(6, 3, 13, 18))
        centre = frames.reshape(2, 3, 3, *frames.shape[-2:])[:, 1]
        split = model.window_forward(model.frame_features(frames), centre, (13, 18))
    assert split.shape == whole.shape
    torch.testing.assert_close(split, whole, rtol=0, atol=0)


COMBOS = {"plain": dict(), "tile": dict(tile=8), "ensemble": dict(ensemble=True),
          "tile+ensemble": dict(tile=8, ensemble=True)}


def _views(restorer: Restorer, h: int, w: int) -> int:
    """Feature maps a frame needs: one per (ensemble transform, tile of that transform's orientation)."""
    o = restorer.options
    shapes = [(h, w)] * (4 if o.ensemble else 1) + [(w, h)] * (4 if o.ensemble else 0)
    return sum(1 if o.tile is None else len(restorer._plan(*s)) for s in shapes)


# Every boundary policy plainly; tiling and the ensemble (each view's features are cached apart) with one each.
CASES = [(b, "plain") for b in BOUNDARIES if b != "inside"] + [
    ("reflection", "tile"), ("circle", "tile"), ("replicate", "ensemble"), ("new_info", "tile+ensemble")]


@pytest.mark.parametrize("boundary, combo", CASES)
def test_cached_restore_equals_the_whole_forward_and_encodes_each_frame_once(tiny, boundary, combo):
    model = tiny()
    n, frames = 6, _frames(6)
    kw = dict(batch=4, boundary=boundary, **COMBOS[combo])
    calls = _count_frames(model)
    restorer = Restorer(model, RestoreOptions(**kw))
    cached = list(restorer.restore(iter(frames), n))
    views = _views(restorer, 12, 16)
    assert sum(calls) == n * views  # once per frame and view, however many windows a frame is in
    calls.clear()
    whole = list(Restorer(model, RestoreOptions(frame_cache=False, **kw)).restore(iter(frames), n))
    assert sum(calls) == n * 3 * views  # the whole forward: once per window a frame is in (3-frame windows)
    assert len(cached) == len(whole) == n
    for a, b in zip(cached, whole):
        torch.testing.assert_close(a, b, rtol=0, atol=2e-6)


def test_cache_holds_only_frames_later_windows_need(tiny, monkeypatch):
    restorer = Restorer(tiny(), RestoreOptions(batch=2))
    held: list[int] = []
    inner = restorer.forward_cached

    def spy(frames, windows, store):
        held.append(max((len(v) for v in store.values()), default=0))
        return inner(frames, windows, store)

    monkeypatch.setattr(restorer, "forward_cached", spy)
    assert len(list(restorer.restore(iter(_frames(12)), 12))) == 12
    # Before a batch of 2 centres the cache holds what the previous batch read (2 + 1 look-ahead) at most.
    assert max(held) <= 4


def test_bf16_and_channels_last_cached_paths_match_the_whole_forward(tiny):
    model = tiny()
    frames = _frames(5)
    for kw, atol in ((dict(channels_last=True), 1e-5), (dict(bf16=True), 0.02)):
        cached = torch.stack(list(Restorer(model, RestoreOptions(batch=2, **kw)).restore(iter(frames), 5)))
        whole = torch.stack(list(Restorer(model, RestoreOptions(batch=2, frame_cache=False, **kw))
                                 .restore(iter(frames), 5)))
        torch.testing.assert_close(cached, whole, rtol=0, atol=atol)
    plain = torch.stack(list(Restorer(model, RestoreOptions(batch=2, frame_cache=False)).restore(iter(frames), 5)))
    torch.testing.assert_close(cached.float(), plain, rtol=0, atol=0.05)


def test_frame_cache_is_on_by_default_only_where_it_was_measured():
    from edvr_fast.inference.engine import frame_cache_default

    assert frame_cache_default(RestoreOptions(), torch.device("cpu")) is True
    # Never run on a GPU yet: not a CUDA default until it has (the option still turns it on).
    assert frame_cache_default(RestoreOptions(), torch.device("cuda")) is False
    assert frame_cache_default(RestoreOptions(frame_cache=True), torch.device("cuda")) is True
    assert frame_cache_default(RestoreOptions(frame_cache=False), torch.device("cpu")) is False
