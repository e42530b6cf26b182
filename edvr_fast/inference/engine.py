"""The streaming clip restorer: frames in order -> temporal windows (clip ends by the sampler's boundary
policies) -> batched, optionally tiled / ensembled / bf16 forward -> restored frames in order.

Each frame's features (EDVR's per-frame part) are computed once and kept while a window still needs them;
only alignment, fusion and reconstruction run per output frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from edvr_fast.data.sampler import BOUNDARIES, window_indices
from edvr_fast.errors import DatasetError, InputError
from edvr_fast.inference.ensemble import TRANSFORMS, apply_transform, ensemble_forward, ensemble_mean
from edvr_fast.inference.tiling import TilePlan, blend_tiles, default_overlap, forward_tiled
from edvr_fast.models import EDVR


@dataclass
class RestoreOptions:
    """How frames are pushed through the model; none of these change the weights."""

    batch: int = 4  # windows (output frames) per forward call
    tile: int | None = None  # tile side in input pixels; None = whole frames
    tile_overlap: int | None = None  # None = default_overlap(params, tile)
    ensemble: bool = False  # x8 flip/transpose self-ensemble
    bf16: bool = False  # bfloat16 autocast
    boundary: str = "reflection"  # clip-end policy of edvr_fast.data.sampler.window_indices
    interval: int = 1  # frame step inside a window
    # Per-frame features once per frame (True) or the whole forward per window (False); None: on for the
    # CPU, where it was measured, and off on other devices until it has run there (never on a GPU yet).
    frame_cache: bool | None = None
    channels_last: bool = False  # NHWC activations and weights

    def validate(self) -> None:
        if self.batch < 1:
            raise InputError(f"--batch must be >= 1, got {self.batch}")
        if self.tile is not None and self.tile < 1:
            raise InputError(f"--tile must be >= 1, got {self.tile}")
        if self.tile_overlap is not None and self.tile_overlap < 0:
            raise InputError(f"--tile-overlap must be >= 0, got {self.tile_overlap}")
        if self.boundary not in BOUNDARIES or self.boundary == "inside":
            allowed = [b for b in BOUNDARIES if b != "inside"]
            raise InputError(f"--boundary must be one of {allowed} (every frame is restored), got {self.boundary!r}")
        if self.interval < 1:
            raise InputError(f"--interval must be >= 1, got {self.interval}")


def frame_cache_default(options: RestoreOptions, device: torch.device) -> bool:
    """Whether the Restorer uses the per-frame feature cache: the option if set, else on for the CPU only."""
    return options.frame_cache if options.frame_cache is not None else device.type == "cpu"


def frame_to_tensor(frame: np.ndarray, device: torch.device) -> Tensor:
    """uint8 HWC BGR (or gray C=1) -> float [3, H, W] RGB in [0, 1] on `device` (gray is repeated)."""
    t = torch.from_numpy(np.ascontiguousarray(frame)).to(device, non_blocking=True)
    t = t.permute(2, 0, 1)
    t = t.expand(3, -1, -1) if t.shape[0] == 1 else t.flip(0)
    return t.float().div_(255.0)


def tensor_to_frame(img: Tensor) -> np.ndarray:
    """float [3, H, W] RGB in [0, 1] -> uint8 HWC BGR numpy (rounded as the PNG will hold it)."""
    u8 = img.clamp(0, 1).mul(255.0).round_().to(torch.uint8)
    return np.ascontiguousarray(u8.flip(0).permute(1, 2, 0).cpu().numpy())


class Restorer:
    """Applies one EDVR to whole clips; `restore` streams, holding only the frames windows still need."""

    def __init__(self, model: EDVR, options: RestoreOptions | None = None, device: str | torch.device = "cpu"):
        self.options = options or RestoreOptions()
        self.options.validate()
        self.device = torch.device(device)
        self.frame_cache = frame_cache_default(self.options, self.device)
        self.model = model.to(self.device).eval()
        if self.options.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.params = model.params
        self._plans: dict[tuple[int, int], TilePlan] = {}
        o = self.options
        self.overlap = None if o.tile is None else (
            default_overlap(self.params, o.tile) if o.tile_overlap is None else o.tile_overlap
        )

    def _plan(self, h: int, w: int) -> TilePlan:
        key = (h, w)
        if key not in self._plans:
            self._plans[key] = TilePlan.make(self.params, h, w, self.options.tile, self.overlap)
        return self._plans[key]

    def _layout(self, x: Tensor) -> Tensor:
        if self.options.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _run(self, x: Tensor) -> Tensor:
        if self.options.tile is None:
            return self.model(x)
        return forward_tiled(self.model, x, self._plan(int(x.shape[-2]), int(x.shape[-1])))

    def _context(self):
        o = self.options
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if o.bf16 else contextlib.nullcontext()
        )
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(autocast)
        return stack

    def forward(self, x: Tensor) -> Tensor:
        """[B, T, 3, H, W] -> [B, 3, H*s, W*s] float32 clamped to [0, 1], with tiling/ensemble/bf16 applied.

        The whole model per window (no frame cache): what `restore` does with frame_cache=False.
        """
        o = self.options
        with self._context():
            out = ensemble_forward(self._run, x) if o.ensemble else self._run(x)
            return out.float().clamp_(0, 1)

    def forward_cached(self, frames: dict[int, Tensor], windows: list[list[int]],
                       store: dict[tuple, dict[int, list[Tensor]]]) -> Tensor:
        """The windows `windows` (frame indices into `frames`, each [3, H, W]) -> [B, 3, H*s, W*s] as `forward`.

        `store` keeps, per view (ensemble transform, tile) and frame, the padded frame and its feature
        pyramid; frames missing there are computed in one batched call, the rest reused. Equal to
        `forward` on the stacked windows up to float rounding.
        """
        o, model, p = self.options, self.model, self.params
        needed = sorted({j for win in windows for j in win})
        h, w = frames[needed[0]].shape[-2:]
        transforms = TRANSFORMS if o.ensemble else ((False, False, False),)

        def run_view(t: tuple[bool, bool, bool]) -> Tensor:
            vh, vw = (w, h) if t[2] else (h, w)

            def run_tile(row: tuple[int, int], col: tuple[int, int]) -> Tensor:
                size = (row[1] - row[0], col[1] - col[0])
                model.check_input_shape((len(windows), p.num_frame, 3, *size))
                have = store.setdefault((t, row, col), {})
                new = [j for j in needed if j not in have]
                if new:
                    x = apply_transform(torch.stack([frames[j] for j in new]), *t)
                    x = self._layout(x[..., row[0] : row[1], col[0] : col[1]].contiguous())
                    padded = model.pad_frames(x)
                    pyramid = model.frame_features(padded)
                    for k, j in enumerate(new):
                        have[j] = [padded[k], *(level[k] for level in pyramid)]
                feats = [self._layout(torch.stack([have[j][i] for win in windows for j in win])) for i in (1, 2, 3)]
                centre = torch.stack([have[win[p.center]][0] for win in windows])
                return model.window_forward(feats, centre, size)

            if o.tile is None:
                return run_tile((0, vh), (0, vw))
            return blend_tiles(self._plan(vh, vw), run_tile, len(windows), frames[needed[0]].device)

        with self._context():
            out = ensemble_mean(run_view) if o.ensemble else run_view(transforms[0])
            return out.float().clamp_(0, 1)

    def windows(self, num_frames: int) -> list[list[int]]:
        """Input frame indices of the window of every output frame of a clip of `num_frames`."""
        o = self.options
        return [
            window_indices(c, num_frames, self.params.num_frame, o.interval, o.boundary) for c in range(num_frames)
        ]

    def restore(self, frames: Iterable[np.ndarray | Tensor], num_frames: int, name: str = "clip") -> Iterator[Tensor]:
        """Restored frames ([3, H*s, W*s] float on the device, in [0, 1]) in order, one per input frame.

        `frames` yields uint8 HWC frames in order (as `read_clip_frames` does), or frames already as float
        [3, H, W] RGB tensors; `num_frames` is needed up front because the last windows look past the end.
        Every frame must have the first frame's size.
        """
        if num_frames < 1:
            raise DatasetError("clip has no frames", name)
        windows = self.windows(num_frames)
        last_use = [0] * num_frames
        for c, win in enumerate(windows):
            for j in win:
                last_use[j] = max(last_use[j], c)
        cache: dict[int, Tensor] = {}
        features: dict[tuple, dict[int, list[Tensor]]] = {}
        source = iter(frames)
        read = 0
        shape = None
        for b0 in range(0, num_frames, self.options.batch):
            centres = range(b0, min(num_frames, b0 + self.options.batch))
            need = max(max(windows[c]) for c in centres)
            while read <= need:
                try:
                    frame = next(source)
                except StopIteration:
                    raise DatasetError(
                        f"clip ended after {read} frames, expected {num_frames}", name, "the file may be truncated"
                    ) from None
                # A tensor frame is already decoded and uploaded ([3, H, W] float RGB in [0, 1]).
                on_device = isinstance(frame, Tensor)
                size = tuple(frame.shape[-2:]) if on_device else tuple(frame.shape[:2])
                shape = shape or size
                if size != shape:
                    raise DatasetError(
                        f"frame {read} is {size[1]}x{size[0]}, the clip's first frame is "
                        f"{shape[1]}x{shape[0]}", name, "every frame of a clip must have the same size",
                    )
                cache[read] = frame.to(self.device) if on_device else frame_to_tensor(frame, self.device)
                read += 1
            if self.frame_cache:
                out = self.forward_cached(cache, [windows[c] for c in centres], features)
            else:
                out = self.forward(torch.stack([torch.stack([cache[j] for j in windows[c]]) for c in centres]))
            # Frames no later window uses are dropped, so a long video needs memory for a few frames only.
            for j in [j for j in cache if last_use[j] <= centres[-1]]:
                del cache[j]
                for view in features.values():
                    view.pop(j, None)
            yield from out.unbind(0)
