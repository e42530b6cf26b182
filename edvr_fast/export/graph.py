"""The graph every export starts from: `EDVR.forward` traced by `torch.export`, with the model's padding
to a multiple of 4 (16 with HR input) written so that dynamic heights and widths stay symbolic.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from edvr_fast.errors import InputError
from edvr_fast.models.edvr import EDVR

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


class AnySize(nn.Module):
    """EDVR.forward for frames of any size, in a form `torch.export` keeps symbolic.

    EDVR pads frames up to a multiple of `pad_multiple` (replicate or reflect, bottom and right) only when
    they are not one already, and crops the output back: that branch on the size would fix the exported
    graph to one case. Here the padded size is always written as m * ceil(h / m) (so every level of the
    pyramid is an exact multiple the tracer can prove), the padding always runs (as a gather of rows and
    columns; nothing is added when h is a multiple already) and the crop is a gather of the first
    h * scale rows and w * scale columns; the model's own forward then sees a multiple of m and pads
    nothing. The result equals EDVR.forward.
    """

    def __init__(self, model: EDVR):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        p = self.model.params
        self.model._check_input(x)
        m = p.pad_multiple
        b, t, c, h, w = x.shape
        hp, wp = (h + m - 1) // m * m, (w + m - 1) // m * m
        frames = x.index_select(3, _pad_index(h, hp, p.pad_mode, x.device))
        frames = frames.index_select(4, _pad_index(w, wp, p.pad_mode, x.device))
        out = self.model(frames)
        rows = torch.arange(h * p.scale, device=out.device)
        cols = torch.arange(w * p.scale, device=out.device)
        return out.index_select(2, rows).index_select(3, cols)


def _pad_index(n: int, padded: int, mode: str, device: torch.device) -> Tensor:
    """Source row of each of `padded` rows: F.pad's replicate / reflect padding at the end, as a gather
    (the tracer cannot prove F.pad's own reflect bound, pad < n, for a symbolic n; here n > pad holds by
    the minimum size)."""
    i = torch.arange(padded, device=device)
    if mode == "reflect":
        return torch.where(i < n, i, 2 * (n - 1) - i)
    return i.clamp(max=n - 1)


@dataclass(frozen=True)
class ExportSpec:
    """What to trace: example frame size, dynamic batch/height/width or not, and the dtype."""

    height: int = 64
    width: int = 64
    dynamic: bool = False
    dtype: str = "fp32"


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    m = _SIZE.match(text)
    if m is None or min(int(m.group(1)), int(m.group(2))) < 1:
        raise InputError(f"frame size {text!r} is not HxW with positive integers, e.g. 180x320")
    return int(m.group(1)), int(m.group(2))


def min_dynamic_size(model: EDVR) -> int:
    """The smallest height/width a dynamic export accepts: the coarsest pyramid level must be >= 2
    pixels, or the tracer specialises on broadcasting a size of 1 (5, or 17 with HR input)."""
    return model.params.pad_multiple + 1


def prepare(model: EDVR, dtype: str) -> EDVR:
    """The model in eval mode, in `dtype`, with the offset statistics (a training aid) off."""
    if dtype not in DTYPES:
        raise InputError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    model = model.eval().to(DTYPES[dtype])
    model.track_offset_stats(False)
    return model


def example_input(model: EDVR, spec: ExportSpec, batch: int = 1, seed: int = 0, dtype: str = "fp32") -> Tensor:
    """Seeded random frames [batch, T, 3, H, W] in [0, 1] in `dtype`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, model.params.num_frame, 3, spec.height, spec.width, generator=g)
    return x.to(DTYPES[dtype])


def export_program(model: EDVR, spec: ExportSpec) -> torch.export.ExportedProgram:
    """torch.export of `AnySize(model)` (our DCN stays one node: the registered op)."""
    from torch.export import Dim

    dynamic_shapes = None
    batch = 1
    if spec.dynamic:
        low = min_dynamic_size(model)
        if min(spec.height, spec.width) < low:
            raise InputError(f"--dynamic needs an example frame size of at least {low}x{low} for this model "
                             f"(got {spec.height}x{spec.width}); the exported model accepts any size >= {low}")
        # The example batch is 2: torch.export fixes a dimension whose example size is 1.
        batch = 2
        dynamic_shapes = ({0: Dim("batch", min=1), 3: Dim("height", min=low), 4: Dim("width", min=low)},)
    x = example_input(model, spec, batch, dtype=spec.dtype)
    with torch.no_grad():
        return torch.export.export(AnySize(model), (x,), dynamic_shapes=dynamic_shapes, strict=False)


def atomic_path(path: Path) -> Path:
    """A temporary name beside `path`, with its suffix (renamed onto it when the file is complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def save_pt2(program: torch.export.ExportedProgram, path: str | Path) -> Path:
    """torch.export.save, atomically."""
    path = Path(path)
    tmp = atomic_path(path)
    try:
        torch.export.save(program, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
