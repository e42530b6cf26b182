"""`python -m edvr_fast.export`: write a checkpoint as ONNX, a torch.export program, an AOTInductor package
or safetensors, and check the written file against PyTorch. Owns the command line only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edvr_fast.errors import EdvrError, InputError
from edvr_fast.export import FORMATS, ExportSpec, check_combination, export_model, format_for, parse_size
from edvr_fast.export.graph import DTYPES
from edvr_fast.models import load_pretrained, preset_names

DEFAULT_SIZE = "64x64"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edvr_fast.export",
        description="Export an EDVR checkpoint (ours, safetensors, original EDVR, BasicSR or mmagic) for "
                    "deployment, then run the written file on a seeded example input and print its max abs "
                    "difference from PyTorch (above the tolerance it is an error).",
        epilog="Tolerances (max abs difference on the example): onnx fp32 1e-4, onnx fp16 1e-2 (vs the fp32 "
               "model), pt2 fp32 1e-4, pt2 bf16 3e-2 (vs eager bf16), aoti fp32 1e-4, safetensors exact.")
    parser.add_argument("--checkpoint", required=True, help="weights file load_pretrained reads")
    parser.add_argument("--preset", choices=preset_names(), metavar="PRESET",
                        help="architecture when the file does not store it: " + ", ".join(preset_names()))
    parser.add_argument("--output", required=True, help="file to write (*.onnx, *.pt2, *.safetensors)")
    parser.add_argument("--format", choices=FORMATS, help="default: from the output suffix")
    parser.add_argument("--frames-size", metavar="HxW",
                        help=f"frame size of the example input (default {DEFAULT_SIZE})")
    parser.add_argument("--dynamic", action="store_true",
                        help="onnx/pt2: any batch and any frame size >= 5x5 (17x17 with HR input)")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32",
                        help="onnx: fp32 or fp16; pt2: fp32 or bf16; aoti: fp32")
    parser.add_argument("--opset", type=int, help="ONNX opset (>= 19; default 20)")
    parser.add_argument("--no-check", action="store_true", help="write only; do not run the written file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        fmt = format_for(args.output, args.format)
        if fmt == "aoti" and not args.output.endswith(".pt2"):
            raise InputError(f"--format aoti writes a .pt2 package; name the output *.pt2, not {args.output}")
        h, w = parse_size(args.frames_size or DEFAULT_SIZE)
        spec = ExportSpec(height=h, width=w, dynamic=args.dynamic, dtype=args.dtype)
        check_combination(fmt, spec, explicit_size=args.frames_size is not None)
        model = load_pretrained(args.checkpoint, preset=args.preset)
        result = export_model(model, args.output, fmt, spec, opset=args.opset, verify=not args.no_check,
                              explicit_size=args.frames_size is not None)
    except EdvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = f"{spec.height}x{spec.width}" + (" (dynamic batch, height, width)" if spec.dynamic else "")
    line = (f"wrote {result.path} ({fmt}, {spec.dtype}, example {size}): {result.bytes / 1e6:.2f} MB "
            f"in {result.seconds:.1f} s")
    if result.max_abs_diff is None:
        line += f"; {result.checked_with}"
    else:
        line += (f"; max abs diff vs PyTorch {result.max_abs_diff:.3g} (tolerance {result.tolerance:g}, "
                 f"{result.checked_with})")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
