"""ONNX export: ONNX Runtime equals PyTorch (fp32, 1e-4) for tiny models at several sizes with one dynamic
file, for an EDVR-M-shaped model, with our DCN as the standard DeformConv; every preset passes onnx.checker.
"""

from __future__ import annotations

import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edvr_fast.export import ExportSpec, export_model  # noqa: E402
from edvr_fast.export.onnx_export import MIN_ORT, ort_version, run_onnx  # noqa: E402
from edvr_fast.models import build, preset, preset_names  # noqa: E402

TOL = 1e-4


def _eager(model, x):
    with torch.no_grad():
        return model(x)


def _dcn_nodes(path):
    proto = onnx.load(str(path))
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node), "only standard ONNX operators"
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 19
    return proto, [n for n in proto.graph.node if n.op_type == "DeformConv"]


def test_installed_onnxruntime_runs_deformconv():
    assert ort_version() >= MIN_ORT


@pytest.mark.parametrize("kw, sizes", [
    (dict(), [(1, 20, 24), (2, 21, 26), (1, 5, 7)]),  # a multiple of 4, two that are not, the smallest
    (dict(hr_in=True, with_predeblur=True, scale=1, pad_mode="reflect"), [(1, 32, 32), (1, 17, 45)]),
])
def test_dynamic_onnx_equals_pytorch_at_every_size(tiny, scramble, tmp_path, kw, sizes):
    model = build(tiny(**kw)).eval()
    scramble(model)
    model.track_offset_stats(False)
    path = tmp_path / "tiny.onnx"
    h, w = sizes[1][1:]
    result = export_model(model, path, spec=ExportSpec(h, w, dynamic=True))
    assert result.max_abs_diff is not None and result.max_abs_diff <= TOL

    proto, dcn = _dcn_nodes(path)
    assert len(dcn) == 4  # PCD L3, L2, L1 and the cascade
    assert all(len(n.input) == 5 and n.input[4] for n in dcn), "the mask input is used"
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", model.params.num_frame, 3, "height", "width"]

    g = torch.Generator().manual_seed(1)
    for b, hh, ww in sizes:
        x = torch.rand(b, model.params.num_frame, 3, hh, ww, generator=g)
        got = torch.from_numpy(run_onnx(path, x))
        want = _eager(model, x)
        assert got.shape == want.shape
        assert (got - want).abs().max() <= TOL, (b, hh, ww)


def test_edvr_m_shaped_onnx_equals_pytorch(tmp_path):
    torch.manual_seed(0)
    model = build("edvr-m-sr4").eval()
    with torch.no_grad():  # published-scale weights; non-zero offsets and masks in every DCN
        for dcn in model.dcn_modules().values():
            dcn.conv_offset.weight.normal_(0, 0.02)
            dcn.conv_offset.bias.normal_(0, 0.5)
    model.track_offset_stats(True)
    x = torch.rand(1, 5, 3, 18, 30)
    want = _eager(model, x)
    assert model.offset_stats()[1] > 0.5  # the offsets really move the samples
    model.track_offset_stats(False)
    path = tmp_path / "m.onnx"
    result = export_model(model, path, spec=ExportSpec(18, 30))
    assert result.max_abs_diff <= TOL
    assert (torch.from_numpy(run_onnx(path, x)) - want).abs().max() <= TOL


def test_fp16_onnx_is_close_to_fp32_pytorch(tiny, scramble, tmp_path):
    model = build(tiny()).eval()
    scramble(model)
    result = export_model(model, tmp_path / "h.onnx", spec=ExportSpec(16, 20, dtype="fp16"))
    assert result.max_abs_diff <= 1e-2
    assert onnx.load(str(tmp_path / "h.onnx")).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def _distinct_presets():
    """Each distinct architecture once: presets that differ only in their name export the same graph."""
    seen, names = set(), []
    for name in preset_names():
        key = tuple(sorted(preset(name).to_dict().items(), key=lambda kv: kv[0]))
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


@pytest.mark.slow
@pytest.mark.parametrize("name", _distinct_presets())
def test_every_preset_exports_and_passes_the_checker(tmp_path, name):
    """export_onnx runs onnx.checker (full check) on every file it writes; ORT runs only tiny and M above."""
    model = build(name)
    result = export_model(model, tmp_path / f"{name}.onnx", spec=ExportSpec(32, 32), verify=False)
    proto, dcn = _dcn_nodes(result.path)
    onnx.checker.check_model(proto, full_check=True)
    assert len(dcn) == 4


def test_onnxruntime_without_deformconv_is_a_clear_error(tmp_path, monkeypatch):
    from edvr_fast.errors import InputError
    from edvr_fast.export import onnx_export

    monkeypatch.setattr(onnx_export, "ort_version", lambda: (1, 24, 4))
    with pytest.raises(InputError, match=r"onnxruntime 1\.24\.4 has no DeformConv kernel.*>=1\.25\.0"):
        run_onnx(tmp_path / "any.onnx", torch.zeros(1))
