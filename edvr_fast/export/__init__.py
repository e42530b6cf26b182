"""Deployment: an EDVR written as ONNX (standard DeformConv), a torch.export program (.pt2), an
AOTInductor package or safetensors, each checked against PyTorch after writing; `python -m edvr_fast.export`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from edvr_fast.errors import InputError
from edvr_fast.export import graph
from edvr_fast.export.graph import DTYPES, AnySize, ExportSpec, export_program, parse_size
from edvr_fast.models.checkpoints import load_pretrained, save_safetensors
from edvr_fast.models.edvr import EDVR

FORMATS = ("onnx", "pt2", "aoti", "safetensors")
SUFFIXES = {".onnx": "onnx", ".pt2": "pt2", ".safetensors": "safetensors"}
# dtypes each format is offered in, and the max |exported - PyTorch| allowed on the example input.
# ONNX is compared with the fp32 model; pt2 / aoti with the model in the same dtype.
TOLERANCE = {"onnx": {"fp32": 1e-4, "fp16": 1e-2}, "pt2": {"fp32": 1e-4, "bf16": 3e-2},
             "aoti": {"fp32": 1e-4}, "safetensors": {"fp32": 0.0}}

__all__ = ["AnySize", "ExportResult", "ExportSpec", "FORMATS", "export_model", "export_program", "format_for",
           "load_pt2", "parse_size"]


@dataclass
class ExportResult:
    """What was written and how it compared: max_abs_diff is None when it could not be checked."""

    path: Path
    format: str
    seconds: float
    bytes: int
    max_abs_diff: float | None
    tolerance: float
    checked_with: str


def format_for(path: str | Path, fmt: str | None) -> str:
    """The format asked for, else the one the output suffix names."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"cannot tell the format from the suffix {suffix or '(none)'!r} of {path}",
                         hint=f"pass --format ({', '.join(FORMATS)}) or name the file *.onnx, *.pt2, "
                              "*.safetensors")
    return SUFFIXES[suffix]


def check_combination(fmt: str, spec: ExportSpec, explicit_size: bool = False) -> None:
    """Refuse options that mean nothing for `fmt` (clear errors rather than silently ignored flags)."""
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if spec.dtype not in DTYPES:
        raise InputError(f"--dtype {spec.dtype!r} is not one of {', '.join(DTYPES)}")
    if fmt == "safetensors":
        if spec.dynamic or explicit_size or spec.dtype != "fp32":
            raise InputError("safetensors holds the weights only: --dynamic, --frames-size and --dtype do not "
                             "apply to it")
        return
    if spec.dtype not in TOLERANCE[fmt]:
        why = {"onnx": "ONNX Runtime's DeformConv runs fp32 and fp16 only",
               "pt2": "the exported program is offered in fp32 and bf16",
               "aoti": "the AOTInductor package is built and checked in fp32 only"}[fmt]
        raise InputError(f"--dtype {spec.dtype} with --format {fmt}: {why}",
                         hint=f"use --dtype {' or '.join(TOLERANCE[fmt])}")
    if fmt == "aoti" and spec.dynamic:
        raise InputError("--dynamic with --format aoti is not offered: the package is compiled for the example "
                         "size", hint="use --format pt2 --dynamic for any batch and frame size")


def load_pt2(path: str | Path) -> torch.export.ExportedProgram:
    """An exported program written by `export_model` (needs only edvr_fast imported, for the DCN op)."""
    return torch.export.load(str(path))


def _max_diff(a, b) -> float:
    a = torch.as_tensor(a).float()
    return float((a - b.float()).abs().max())


def export_model(model: EDVR, output: str | Path, fmt: str | None = None, spec: ExportSpec | None = None,
                 opset: int | None = None, verify: bool = True, explicit_size: bool = False) -> ExportResult:
    """Write `model` to `output` in `fmt` and compare it with PyTorch on a seeded example input.

    A difference above the format's tolerance raises InputError (after the file was written, so it can
    be inspected). ONNX is checked only when onnxruntime is installed.
    """
    spec = spec or ExportSpec()
    output = Path(output)
    fmt = format_for(output, fmt)
    check_combination(fmt, spec, explicit_size)
    if opset is not None and fmt != "onnx":
        raise InputError("--opset applies to --format onnx only")
    if opset is not None and opset < 19:
        raise InputError(f"--opset {opset}: the standard DeformConv needs opset 19 or newer")
    reference = graph.prepare(copy.deepcopy(model), "fp32")
    start = time.perf_counter()
    if fmt == "safetensors":
        save_safetensors(reference, output)
        seconds = time.perf_counter() - start
        diff, checked = None, "not checked"
        if verify:
            x = graph.example_input(reference, spec)
            with torch.no_grad():
                diff = _max_diff(load_pretrained(output)(x), reference(x))
            checked = "load_pretrained"
        return _finish(output, fmt, spec, seconds, diff, checked)

    export_copy = graph.prepare(copy.deepcopy(model), spec.dtype)
    program = export_program(export_copy, spec)
    x = graph.example_input(reference, spec)  # batch 1, fp32
    x_dtype = x.to(DTYPES[spec.dtype])
    if fmt == "onnx":
        from edvr_fast.export import onnx_export

        onnx_export.export_onnx(program, x_dtype, output, opset or onnx_export.DEFAULT_OPSET)
        seconds = time.perf_counter() - start
        diff, checked = None, "onnxruntime not installed: not checked"
        if verify and onnx_export.ort_version() is not None:
            got = onnx_export.run_onnx(output, x_dtype)
            with torch.no_grad():
                diff = _max_diff(got, reference(x))
            checked = "onnxruntime " + ".".join(map(str, onnx_export.ort_version()))
        return _finish(output, fmt, spec, seconds, diff, checked)

    if fmt == "pt2":
        graph.save_pt2(program, output)
        seconds = time.perf_counter() - start
        run = load_pt2(output).module() if verify else None
    else:
        run, seconds = _aoti(program, output, start, verify)
    diff, checked = None, "not checked"
    if run is not None:
        with torch.no_grad():
            diff = _max_diff(run(x_dtype), export_copy(x_dtype))
        checked = f"the file loaded back, against eager PyTorch in {spec.dtype}"
    return _finish(output, fmt, spec, seconds, diff, checked)


def _aoti(program, output: Path, start: float, verify: bool):
    import os

    tmp = graph.atomic_path(output)
    try:
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    return (torch._inductor.aoti_load_package(str(output)) if verify else None), seconds


def _finish(output: Path, fmt: str, spec: ExportSpec, seconds: float, diff: float | None,
            checked: str) -> ExportResult:
    tol = TOLERANCE[fmt][spec.dtype]
    result = ExportResult(output, fmt, seconds, output.stat().st_size, diff, tol, checked)
    if diff is not None and not diff <= tol:
        raise InputError(f"the written {fmt} model differs from PyTorch by {diff:.3g} on the example input "
                         f"(tolerance {tol:g} in {spec.dtype}; {checked})", path=output,
                         hint="report this with the command line; the file is left for inspection")
    return result
