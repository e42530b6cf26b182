"""ONNX export: our DCN op translated to the standard `DeformConv` (opset >= 19, mask input used), the
dynamic axes named, and a check of the written file in ONNX Runtime against PyTorch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from edvr_fast.errors import InputError
from edvr_fast.export.graph import atomic_path

# DeformConv first appears in opset 19; 20 is torch's default. ONNX Runtime 1.25.0 is the first release
# with a DeformConv kernel (CPU and CUDA); 1.24.x and older refuse the model (NOT_IMPLEMENTED).
MIN_OPSET = 19
DEFAULT_OPSET = 20
MIN_ORT = (1, 25, 0)
INPUT, OUTPUT = "frames", "restored"


def _need(module: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise InputError(f"ONNX export needs the {module} package",
                         hint="pip install 'edvr_fast[export]' (onnx, onnxruntime, onnxscript)") from exc


def _translation_table(opset: int) -> dict:
    """torch.ops.edvr_fast.modulated_deform_conv2d -> ONNX DeformConv.

    Same contract on both sides: ONNX's offset is [N, 2 * offset_group * kh * kw, Ho, Wo] with (y, x)
    pairs per (group, tap), its mask [N, offset_group * kh * kw, Ho, Wo], input order X, W, offset, B,
    mask; pads are begin/end per axis.
    """
    onnxscript = _need("onnxscript")
    op = getattr(onnxscript, f"opset{opset}")

    def deform_conv(input, offset, mask, weight, bias=None, stride: Sequence[int] = (1, 1),
                    padding: Sequence[int] = (0, 0), dilation: Sequence[int] = (1, 1), groups: int = 1,
                    offset_groups: int = 1):
        ph, pw = padding
        return op.DeformConv(input, weight, offset, bias, mask, dilations=list(dilation), group=groups,
                             offset_group=offset_groups, pads=[ph, pw, ph, pw], strides=list(stride))

    return {torch.ops.edvr_fast.modulated_deform_conv2d.default: deform_conv}


def _axis_names(program: torch.export.ExportedProgram) -> dict[str, str]:
    """The tracer's symbol for each dynamic input axis (e.g. 's77') -> batch / height / width."""
    names = {}
    node = next(n for n in program.graph.nodes if n.op == "placeholder"
                and n.name in program.graph_signature.user_inputs)
    for axis, label in ((0, "batch"), (3, "height"), (4, "width")):
        size = node.meta["val"].shape[axis]
        if isinstance(size, torch.SymInt):
            names[str(size.node.expr)] = label
    return names


def _rename_axes(proto, names: dict[str, str]) -> None:
    if not names:
        return
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    for value in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = pattern.sub(lambda m: names[m.group(1)], dim.dim_param).replace(" ", "")


def export_onnx(program: torch.export.ExportedProgram, example: Tensor, path: str | Path,
                opset: int = DEFAULT_OPSET) -> Path:
    """Write `program` as an ONNX file (atomically) and check it with onnx.checker."""
    onnx = _need("onnx")
    if opset < MIN_OPSET:
        raise InputError(f"--opset {opset}: the standard DeformConv needs opset {MIN_OPSET} or newer")
    path = Path(path)
    onnx_program = torch.onnx.export(program, (example,), dynamo=True, opset_version=opset,
                                     custom_translation_table=_translation_table(opset),
                                     input_names=[INPUT], output_names=[OUTPUT], verbose=False)
    proto = onnx_program.model_proto
    _rename_axes(proto, _axis_names(program))
    onnx.checker.check_model(proto, full_check=True)
    tmp = atomic_path(path)
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def ort_version() -> tuple[int, ...] | None:
    """The installed ONNX Runtime version, or None when it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return tuple(int(p) for p in re.findall(r"\d+", onnxruntime.__version__)[:3])


def run_onnx(path: str | Path, frames: Tensor, threads: int | None = None) -> np.ndarray:
    """One run of the ONNX file in ONNX Runtime on the CPU."""
    import onnxruntime as ort

    version = ort_version()
    if version is not None and version < MIN_ORT:
        raise InputError(f"onnxruntime {'.'.join(map(str, version))} has no DeformConv kernel",
                         hint="pip install 'onnxruntime>=1.25.0'")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT: frames.numpy()})[0]
