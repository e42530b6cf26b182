"""The streaming restorer: window order, bounded frame cache, and clear errors for ragged clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edvr_fast.errors import DatasetError, InputError
from edvr_fast.inference.engine import RestoreOptions, Restorer, frame_to_tensor


def _frames(n: int, h: int = 12, w: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_batched_streaming_matches_one_window_at_a_time_and_reads_lazily(tiny):
    model = tiny()
    frames = _frames(7)
    read = []

    def source():
        for i, f in enumerate(frames):
            read.append(i)
            yield f

    restorer = Restorer(model, RestoreOptions(batch=3))
    stream = restorer.restore(source(), 7)
    first = next(stream)
    assert max(read) <= 3  # the first batch (centres 0-2) needs frames 0-3 only
    outs = [first, *stream]
    assert len(outs) == 7 and outs[0].shape == (3, 48, 64)
    one = Restorer(model, RestoreOptions(batch=1))
    for c, win in enumerate(one.windows(7)):
        x = torch.stack([frame_to_tensor(frames[j], torch.device("cpu")) for j in win])[None]
        assert torch.allclose(outs[c], one.forward(x)[0], atol=1e-5)


def test_gray_frames_are_restored_as_colour(tiny):
    gray = [f[:, :, :1] for f in _frames(3)]
    out = list(Restorer(tiny(), RestoreOptions(batch=2)).restore(iter(gray), 3))
    assert len(out) == 3 and out[0].shape == (3, 48, 64)


def test_ragged_and_short_clips_raise_dataset_error(tiny):
    restorer = Restorer(tiny())
    ragged = _frames(2) + _frames(1, h=16)
    with pytest.raises(DatasetError, match="frame 2 is 16x16"):
        list(restorer.restore(iter(ragged), 3, "clipA"))
    with pytest.raises(DatasetError, match="ended after 2 frames"):
        list(restorer.restore(iter(_frames(2)), 5, "clipB"))


def test_bad_options_raise_input_error(tiny):
    for kw in (dict(batch=0), dict(boundary="inside"), dict(tile=0), dict(tile_overlap=-1)):
        with pytest.raises(InputError):
            Restorer(tiny(), RestoreOptions(**kw))
