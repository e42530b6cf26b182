"""Which frames, crop and flips each sample uses (a pure function of seed, epoch, index), and their order.

Owns temporal windows with EDVR's boundary policies, the sample table, validation splits and DDP sharding.

Random decisions: `SamplePlan.decide(epoch, index)` seeds `np.random.default_rng([seed, epoch, index, 0])`
and draws exactly seven uniform doubles u[0..6] in [0, 1), whatever the flags (so toggling one flag never
shifts another's draw). Integer choices are floor(u * n):
  u0 interval (among those allowed), u1 reverse (< 0.5), u2 crop top, u3 crop left,
  u4 hflip (< 0.5), u5 vflip (< 0.5), u6 transpose (< 0.5).
Augmentation order on a cropped HWC frame: hflip (reverse W), then vflip (reverse H), then transpose
(swap H and W); then BGR->RGB, HWC->CHW, float32 / 255. Every frame of a sample gets the same decision.
With on-the-fly degradation (`degrade_random.DegradeParams` enabled), `SamplePlan.degradation(epoch, index)`
draws it on streams of its own, [seed, epoch, index, 2] (16 uniforms) and [seed, epoch, index, 3] (noise),
so every decision above stays what it was; the LQ window is made from the GT crop before augmentation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edvr_fast.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    from edvr_fast.data.degrade_random import Degradation, DegradeParams
    from edvr_fast.data.store import ClipStore

BOUNDARIES = ("replicate", "reflection", "new_info", "circle", "inside")


@dataclass
class SampleParams:
    """How samples are drawn; gt_size is the crop side in GT pixels (None = full frames)."""

    num_frame: int = 5
    interval_list: tuple[int, ...] = (1,)
    boundary: str = "reflection"
    random_reverse: bool = False
    gt_size: int | None = 256
    use_hflip: bool = True
    use_rot: bool = True  # vflip and transpose (with hflip: all 8 flips/rotations by 90 degrees)
    seed: int = 0

    def validate(self) -> None:
        if self.num_frame < 1 or self.num_frame % 2 == 0:
            raise ConfigError(f"num_frame must be odd and >= 1, got {self.num_frame}")
        if not self.interval_list or any(int(i) < 1 for i in self.interval_list):
            raise ConfigError(f"interval_list must hold integers >= 1, got {list(self.interval_list)}")
        if self.boundary not in BOUNDARIES:
            raise ConfigError(f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
        if self.gt_size is not None and self.gt_size < 1:
            raise ConfigError(f"gt_size must be >= 1 or None, got {self.gt_size}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class SampleSpec:
    """Everything random about one sample; crops are (top, left, height, width), gt crop = lq crop * scale."""

    clip: int  # index into the pack's clips
    center: int
    frames: tuple[int, ...]  # lq frame indices, already reversed when `reversed`
    lq_crop: tuple[int, int, int, int]
    gt_crop: tuple[int, int, int, int]
    hflip: bool
    vflip: bool
    transpose: bool
    reversed: bool
    interval: int


def window_indices(center: int, num_frames: int, num_frame: int, interval: int, boundary: str) -> list[int]:
    """Frame indices of the window around `center` in a clip of `num_frames`, EDVR boundary policies.

    For a 5-frame window at frame 0: replicate 0,0,0,1,2; reflection 2,1,0,1,2; new_info 4,3,0,1,2;
    circle 3,4,0,1,2 (mirrored at the last frame). `inside` never pads: such centres are not sampled.
    Clips shorter than the window are finally clamped to [0, num_frames - 1].
    """
    if not 0 <= center < num_frames:
        raise IndexError(f"center {center} outside a clip of {num_frames} frames")
    half = num_frame // 2
    last = num_frames - 1
    out = []
    for k in range(-half, half + 1):
        i = center + k * interval
        if 0 <= i <= last:
            out.append(i)
            continue
        if boundary == "replicate":
            j = 0 if i < 0 else last
        elif boundary == "reflection":
            j = -i if i < 0 else 2 * last - i
        elif boundary == "new_info":
            j = center + half * interval - i if i < 0 else center - half * interval - (i - last)
        elif boundary == "circle":
            j = i + num_frame * interval if i < 0 else i - num_frame * interval
        elif boundary == "inside":
            raise IndexError(f"center {center} has no full window in a clip of {num_frames} frames")
        else:
            raise ConfigError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        out.append(min(max(j, 0), last))
    return out


class SamplePlan:
    """The table of samples, one per (clip, centre frame), and the decision for each (seed, epoch, index)."""

    def __init__(
        self,
        params: SampleParams,
        num_frames: Sequence[int],
        lq_shapes: Sequence[tuple[int, int, int]],
        scale: int,
        clip_ids: Sequence[int] | None = None,
        names: Sequence[str] | None = None,
        degrade: DegradeParams | None = None,
    ):
        params.validate()
        self.params = params
        self.degrade = degrade if degrade is not None and degrade.enabled else None
        if self.degrade is not None:
            self.degrade.validate()
        self.scale = int(scale)
        self.num_frames = [int(n) for n in num_frames]
        self.lq_shapes = [tuple(int(v) for v in s) for s in lq_shapes]
        self.names = list(names) if names is not None else [str(i) for i in range(len(self.num_frames))]
        self.clip_ids = list(range(len(self.num_frames))) if clip_ids is None else [int(c) for c in clip_ids]
        half = params.num_frame // 2
        margin = half * min(params.interval_list) if params.boundary == "inside" else 0
        self._first = np.array([margin for _ in self.clip_ids], np.int64)
        counts = np.array([max(0, self.num_frames[c] - 2 * margin) for c in self.clip_ids], np.int64)
        self._ends = np.cumsum(counts)
        self.crop_lq: int | None = None
        if params.gt_size is not None:
            if params.gt_size % self.scale:
                raise ConfigError(
                    f"gt_size {params.gt_size} is not a multiple of the dataset scale x{self.scale}"
                )
            self.crop_lq = params.gt_size // self.scale
            for c in self.clip_ids:
                h, w, _ = self.lq_shapes[c]
                if self.crop_lq > min(h, w):
                    raise DatasetError(
                        f"clip '{self.names[c]}' input frames are {w}x{h}, smaller than the crop "
                        f"gt_size/scale = {self.crop_lq}",
                        hint="lower gt_size, or drop this clip from the split",
                    )

    @classmethod
    def from_store(
        cls,
        store: ClipStore,
        params: SampleParams,
        clip_ids: Sequence[int] | None = None,
        degrade: DegradeParams | None = None,
    ) -> SamplePlan:
        """Plan over a ClipStore (or anything with .clips holding num_frames/lq_shape/name, and .scale)."""
        return cls(
            params,
            [c.num_frames for c in store.clips],
            [c.lq_shape for c in store.clips],
            store.scale,
            clip_ids,
            [c.name for c in store.clips],
            degrade,
        )

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def locate(self, index: int) -> tuple[int, int]:
        """(clip index in the pack, centre frame) of sample `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range ({len(self)} samples)")
        k = int(np.searchsorted(self._ends, index, side="right"))
        start = int(self._ends[k - 1]) if k else 0
        return self.clip_ids[k], int(self._first[k]) + index - start

    def decide(self, epoch: int, index: int) -> SampleSpec:
        """The sample's frames, crop and flips: a pure function of (seed, epoch, index)."""
        p = self.params
        clip, center = self.locate(index)
        n = self.num_frames[clip]
        u = np.random.default_rng([p.seed, int(epoch), int(index), 0]).random(7)
        intervals = [int(i) for i in p.interval_list]
        if p.boundary == "inside":
            half = p.num_frame // 2
            intervals = [i for i in intervals if center - half * i >= 0 and center + half * i <= n - 1]
        interval = intervals[int(u[0] * len(intervals))]
        frames = window_indices(center, n, p.num_frame, interval, p.boundary)
        rev = p.random_reverse and u[1] < 0.5
        if rev:
            frames.reverse()
        h, w, _ = self.lq_shapes[clip]
        if self.crop_lq is None:
            lq = (0, 0, h, w)
        else:
            cs = self.crop_lq
            lq = (int(u[2] * (h - cs + 1)), int(u[3] * (w - cs + 1)), cs, cs)
        s = self.scale
        return SampleSpec(
            clip=clip,
            center=center,
            frames=tuple(frames),
            lq_crop=lq,
            gt_crop=(lq[0] * s, lq[1] * s, lq[2] * s, lq[3] * s),
            hflip=bool(p.use_hflip and u[4] < 0.5),
            vflip=bool(p.use_rot and u[5] < 0.5),
            transpose=bool(p.use_rot and u[6] < 0.5),
            reversed=bool(rev),
            interval=interval,
        )

    def degradation(self, epoch: int, index: int) -> Degradation | None:
        """The sample's on-the-fly degradation (None when off): a pure function of (seed, epoch, index)."""
        if self.degrade is None:
            return None
        from edvr_fast.data.degrade_random import NUM_DRAWS, draw

        key = [self.params.seed, int(epoch), int(index)]
        u = np.random.default_rng([*key, 2]).random(NUM_DRAWS)
        return draw(self.degrade, u, (*key, 3))


def split_clips(
    names: Sequence[str],
    val_clips: Sequence[str] | None = None,
    val_fraction: float | None = None,
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """(train, val) clip indices: by explicit names, or a fraction chosen by a hash of (seed, name).

    The fraction split depends only on the names and the seed, never on clip order or machine.
    """
    names = list(names)
    if val_clips is not None and val_fraction is not None:
        raise ConfigError("give either val_clips or val_fraction, not both")
    if val_clips is not None:
        index = {n: i for i, n in enumerate(names)}
        unknown = [n for n in val_clips if n not in index]
        if unknown:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise ConfigError(f"validation clips not in the pack: {unknown}", hint=f"clips are: {shown}")
        val = sorted(index[n] for n in set(val_clips))
    elif val_fraction is not None:
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
        k = min(len(names) - 1, max(1, round(val_fraction * len(names))))
        if k < 1:
            raise ConfigError(f"cannot split {len(names)} clip(s) into train and validation")
        ranked = sorted(
            range(len(names)), key=lambda i: hashlib.sha256(f"{seed}\0{names[i]}".encode()).digest()
        )
        val = sorted(ranked[:k])
    else:
        return list(range(len(names))), []
    taken = set(val)
    return [i for i in range(len(names)) if i not in taken], val


class ClipSampler:
    """Sample indices for one rank: epoch-seeded shuffle, DDP shards padded to equal length, exact resume.

    Iterating yields ints (or (epoch, index) pairs with `with_epoch=True`, which ClipDataset accepts, so
    persistent workers never use a stale epoch). Shards of all ranks are disjoint within an epoch except
    for the padding, which repeats the first indices of the permutation.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        with_epoch: bool = False,
    ):
        if num_samples < 1:
            raise DatasetError("no samples to draw (empty split, or no clip long enough for the window)")
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside world_size {world_size}")
        if drop_last and num_samples < world_size:
            raise ConfigError(f"drop_last with {num_samples} samples leaves nothing for {world_size} ranks")
        self.num_samples, self.shuffle, self.seed = int(num_samples), shuffle, int(seed)
        self.rank, self.world_size, self.drop_last, self.with_epoch = rank, world_size, drop_last, with_epoch
        self.epoch = 0
        self.position = 0  # indices handed out so far in this epoch (counting the resumed start)
        self._start = 0

    @property
    def shard_size(self) -> int:
        if self.drop_last:
            return self.num_samples // self.world_size
        return -(-self.num_samples // self.world_size)

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's full index list for `epoch`."""
        n = self.num_samples
        if self.shuffle:
            order = np.random.default_rng([self.seed, int(epoch), 0, 1]).permutation(n)
        else:
            order = np.arange(n)
        total = self.shard_size * self.world_size
        if total > n:
            order = np.resize(order, total)  # repeats from the start
        return order[self.rank : total : self.world_size]

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._start = 0
            self.position = 0
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.shard_size - self._start

    def __iter__(self) -> Iterator[int | tuple[int, int]]:
        epoch, start = self.epoch, self._start
        order = self.indices(epoch)
        self._start = 0  # a resumed position applies to one pass only
        for k in range(start, len(order)):
            self.position = k + 1
            i = int(order[k])
            yield (epoch, i) if self.with_epoch else i

    def state_dict(self, consumed: int | None = None) -> dict:
        """Resume state. With a DataLoader (it reads ahead) pass `consumed`: samples this rank trained on."""
        return {
            "epoch": self.epoch,
            "position": self.position if consumed is None else int(consumed),
            "seed": self.seed,
            "num_samples": self.num_samples,
            "world_size": self.world_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "num_samples", "world_size", "shuffle", "drop_last"):
            if state[key] != getattr(self, key):
                raise ConfigError(
                    f"sampler state has {key}={state[key]!r} but this sampler has {getattr(self, key)!r}",
                    hint="resume with the same dataset, split, seed and number of processes",
                )
        if not 0 <= state["position"] <= self.shard_size:
            raise ConfigError(f"sampler position {state['position']} outside the epoch ({self.shard_size})")
        self.epoch = int(state["epoch"])
        self._start = self.position = int(state["position"])
