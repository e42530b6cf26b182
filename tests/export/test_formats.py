"""pt2 (torch.export) and safetensors round trips, the AOTInductor package, and the command line's
conversions and argument errors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edvr_fast.errors import InputError
from edvr_fast.export import ExportSpec, check_combination, export_model, format_for, parse_size
from edvr_fast.export.__main__ import main
from edvr_fast.models import EDVR, build, export_state_dict, load_pretrained

ROOT = Path(__file__).resolve().parents[2]


def _model(tiny, scramble, **kw) -> EDVR:
    model = build(tiny(**kw)).eval()
    scramble(model)
    return model


def _ours(model: EDVR, path: Path) -> Path:
    torch.save({"format": "edvr_fast", "model_params": model.params.to_dict(), "model": model.state_dict()}, path)
    return path


def test_pt2_round_trip_loads_with_only_import_edvr_fast(tiny, scramble, tmp_path):
    model = _model(tiny, scramble)
    path = tmp_path / "tiny.pt2"
    result = export_model(model, path, spec=ExportSpec(20, 24, dynamic=True))
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    x = torch.rand(2, 3, 3, 13, 22)  # another batch and a size that is not a multiple of 4
    with torch.no_grad():
        torch.save({"x": x, "want": model(x)}, tmp_path / "io.pt")
    code = ("import sys, torch, edvr_fast\n"
            "ep = torch.export.load(sys.argv[1]); io = torch.load(sys.argv[2])\n"
            "with torch.no_grad():\n"
            "    d = (ep.module()(io['x']) - io['want']).abs().max().item()\n"
            "print(d); sys.exit(0 if d <= 1e-4 else 1)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "io.pt")], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_pt2_bf16_matches_eager_bf16(tiny, scramble, tmp_path):
    model = _model(tiny, scramble)
    result = export_model(model, tmp_path / "b.pt2", spec=ExportSpec(16, 16, dtype="bf16"))
    assert result.max_abs_diff <= 3e-2
    node_dtypes = {n.meta["val"].dtype for n in torch.export.load(str(result.path)).graph.nodes
                   if n.op == "placeholder" and "val" in n.meta}
    assert node_dtypes == {torch.bfloat16}


@pytest.mark.slow
def test_aoti_package_gives_the_eager_output(tiny, scramble, tmp_path):
    model = _model(tiny, scramble)
    result = export_model(model, tmp_path / "tiny_aoti.pt2", "aoti", ExportSpec(16, 20))
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    package = torch._inductor.aoti_load_package(str(result.path))
    x = torch.rand(1, 3, 3, 16, 20)
    with torch.no_grad():
        assert (package(x) - model(x)).abs().max() <= 1e-4


def test_cli_converts_a_basicsr_file_to_safetensors_read_without_preset(tiny, scramble, tmp_path, capsys):
    model = _model(tiny, scramble, with_tsa=False)
    torch.save({"params": export_state_dict(model, "basicsr")}, tmp_path / "basicsr.pth")
    out = tmp_path / "w.safetensors"
    assert main(["--checkpoint", str(tmp_path / "basicsr.pth"), "--output", str(out)]) == 0
    assert "max abs diff vs PyTorch 0 " in capsys.readouterr().out
    again = load_pretrained(out)
    assert again.params == model.params
    x = torch.rand(1, 3, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    # A preset that does not fit the file is an error naming the keys, and writes nothing.
    assert main(["--checkpoint", str(tmp_path / "basicsr.pth"), "--preset", "edvr-m-sr4",
                 "--output", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "missing (" in err and "unexpected (2): fusion.weight" in err and "shape mismatch" in err
    assert not (tmp_path / "m.safetensors").exists()


def test_cli_onnx_prints_the_difference(tiny, scramble, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    ckpt = _ours(_model(tiny, scramble), tmp_path / "tiny.pth")
    out = tmp_path / "t.onnx"
    assert main(["--checkpoint", str(ckpt), "--output", str(out), "--frames-size", "10x14"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"wrote {out} (onnx, fp32, example 10x14)") and "max abs diff vs PyTorch" in line
    assert out.is_file() and not list(tmp_path.glob(".t*.tmp-*"))


@pytest.mark.parametrize("argv, message", [
    (["--output", "x.onnx", "--dtype", "bf16"], "bf16 with --format onnx"),
    (["--output", "x.pt2", "--dtype", "fp16"], "fp16 with --format pt2"),
    (["--output", "x.safetensors", "--dynamic"], "safetensors holds the weights only"),
    (["--output", "x.safetensors", "--frames-size", "8x8"], "safetensors holds the weights only"),
    (["--output", "x.bin"], "cannot tell the format"),
    (["--output", "x.pt2", "--format", "aoti", "--dynamic"], "--dynamic with --format aoti"),
    (["--output", "x.onnx", "--format", "aoti"], "writes a .pt2 package"),
    (["--output", "x.onnx", "--frames-size", "12by12"], "is not HxW"),
    (["--output", "x.onnx", "--frames-size", "4x40", "--dynamic"], "at least 5x5"),
    (["--output", "x.pt2", "--opset", "20"], "--opset applies to --format onnx only"),
    (["--output", "x.onnx", "--opset", "18"], "needs opset 19"),
])
def test_bad_arguments_are_clear_errors(tiny, tmp_path, capsys, argv, message):
    ckpt = _ours(build(tiny()), tmp_path / "tiny.pth")
    argv = [a if not a.startswith("x.") else str(tmp_path / a) for a in argv]
    assert main(["--checkpoint", str(ckpt), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if p.name != "tiny.pth"], "nothing written"


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "none.pth"), "--output", str(tmp_path / "x.onnx")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err


def test_helpers_refuse_bad_values():
    assert parse_size(" 180x320 ") == (180, 320)
    assert format_for("a.ONNX", None) == "onnx" and format_for("a.onnx", "pt2") == "pt2"
    with pytest.raises(InputError):
        parse_size("0x10")
    with pytest.raises(InputError, match="not one of"):
        check_combination("tflite", ExportSpec())
