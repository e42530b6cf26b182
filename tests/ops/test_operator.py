"""The operator as PyTorch sees it: gradients, opcheck, torch.compile, autocast, schema, backend()."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from dcn_reference import make_case

import edvr_fast.ops as ops
from edvr_fast.ops import DCNPack, ModulatedDeformConv2d, _registry, modulated_deform_conv2d


def _requires_grad(args):
    return tuple(a.clone().requires_grad_() if a is not None else None for a in args)


@pytest.mark.parametrize("conv_kw", [
    dict(N=2, C=4, Co=3, H=5, W=6, kh=3, kw=3, offset_groups=2),
    dict(N=1, C=4, Co=4, H=7, W=5, kh=2, kw=3, stride=(2, 1), dilation=(1, 2), padding=(0, 2), groups=2),
])
def test_gradcheck_float64(conv_kw):
    args, conv = make_case(**conv_kw, offset_scale=1.5)
    args = _requires_grad(args)

    def f(x, off, m, w, b):
        return modulated_deform_conv2d(x, off, m, w, b, **conv)

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5)


def test_gradient_is_zero_for_samples_far_outside():
    args, conv = make_case(N=1, C=2, Co=2, H=4, W=4, kh=3, kw=3)
    x, off, m, w, b = _requires_grad(args)
    off_far = (off.detach() * 0 + 50.0).requires_grad_()
    modulated_deform_conv2d(x, off_far, m, w, b, **conv).sum().backward()
    assert torch.count_nonzero(x.grad) == 0 and torch.count_nonzero(off_far.grad) == 0
    assert torch.count_nonzero(m.grad) == 0


def test_opcheck():
    args, conv = make_case(N=2, C=4, Co=4, H=6, W=5, kh=3, kw=3, offset_groups=2, dtype=torch.float32)
    x, off, m, w, b = _requires_grad(args)
    op_args = (x, off, m, w, b, list(conv["stride"]), list(conv["padding"]), list(conv["dilation"]),
               conv["groups"], conv["offset_groups"])
    torch.library.opcheck(torch.ops.edvr_fast.modulated_deform_conv2d.default, op_args)
    no_bias = op_args[:4] + (None,) + op_args[5:]
    torch.library.opcheck(torch.ops.edvr_fast.modulated_deform_conv2d.default, no_bias)


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    mod = DCNPack(8, 8, 3, padding=1, offset_groups=2)
    torch.nn.init.normal_(mod.conv_offset.weight, std=0.1)
    x, feat = torch.randn(2, 8, 9, 7), torch.randn(2, 8, 9, 7)
    eager = mod(x, feat)
    compiled = torch.compile(mod, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, feat), eager, rtol=1e-5, atol=1e-5)


def test_autocast_cpu_runs_in_bfloat16_natively():
    args, conv = make_case(N=1, C=4, Co=4, H=6, W=6, kh=3, kw=3, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = modulated_deform_conv2d(*args, **conv)
    assert out.dtype == torch.bfloat16
    ref = modulated_deform_conv2d(*args, **conv)
    assert ((out.float() - ref).norm() / ref.norm()) < 2e-2


def test_dcn_pack_layout():
    """o1, o2, m chunks: offset = cat(o1, o2), mask = sigmoid(m), as in every published EDVR weight file."""
    pack = DCNPack(4, 4, 3, padding=1, offset_groups=2)
    torch.nn.init.normal_(pack.conv_offset.weight)
    feat = torch.randn(1, 4, 5, 5)
    raw = pack.conv_offset(feat)
    offset, mask = pack.offset_mask(feat)
    n = 2 * 9
    torch.testing.assert_close(offset, raw[:, : 2 * n])
    torch.testing.assert_close(mask, torch.sigmoid(raw[:, 2 * n:]))
    x = torch.randn(1, 4, 5, 5)
    torch.testing.assert_close(pack(x, feat), modulated_deform_conv2d(x, offset, mask, pack.weight, pack.bias,
                                                                      1, 1, 1, 1, 2))


def test_module_gradients_flow_to_parameters():
    layer = ModulatedDeformConv2d(4, 6, (3, 3), padding=1, offset_groups=2)
    x = torch.randn(2, 4, 5, 5, requires_grad=True)
    off = torch.randn(2, 36, 5, 5, requires_grad=True)
    m = torch.rand(2, 18, 5, 5, requires_grad=True)
    layer(x, off, m).square().mean().backward()
    for t in (x, off, m, layer.weight, layer.bias):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_backend_reports_cpu_kernel():
    info = ops.backend()
    # The compiled CPU kernel when _C is loaded (and the fallback is not forced), else the fallback.
    built = _registry._state["extension"] is not None and not _registry.force_fallback()
    assert info["cpu"] == ("cpu-kernel" if built else "fallback")
    assert "cuda" in info and "extension" in info


def test_schema_matches_extension():
    if _registry._state["extension"] is None:
        pytest.skip("edvr_fast._C is not built in this environment")
    schema = str(torch.ops.edvr_fast.modulated_deform_conv2d.default._schema)
    assert schema == "edvr_fast::" + _registry.FWD_SCHEMA
    bwd = str(torch.ops.edvr_fast.modulated_deform_conv2d_backward.default._schema)
    assert bwd == "edvr_fast::" + _registry.BWD_SCHEMA


def test_force_fallback_environment_variable():
    code = "import edvr_fast.ops as o, json; print(json.dumps(o.backend()))"
    env = dict(os.environ, **{ops.FORCE_FALLBACK_ENV: "1"})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert '"forced_fallback": "True"' in out.stdout
    assert '"cuda": "fallback' in out.stdout
    assert '"cpu": "fallback"' in out.stdout


def test_import_does_not_load_data_libraries():
    code = "import sys, edvr_fast, edvr_fast.ops; print('lmdb' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_meta_tensors_give_shapes_and_gradients():
    """Shape-only runs (models built on the meta device) go through the fake kernel, forward and backward."""
    x = torch.empty(2, 8, 9, 7, device="meta", requires_grad=True)
    off = torch.empty(2, 2 * 2 * 9, 9, 7, device="meta", requires_grad=True)
    m = torch.empty(2, 2 * 9, 9, 7, device="meta", requires_grad=True)
    w = torch.empty(4, 8, 3, 3, device="meta", requires_grad=True)
    out = modulated_deform_conv2d(x, off, m, w, None, padding=1, offset_groups=2)
    assert out.shape == (2, 4, 9, 7) and out.device.type == "meta"
    out.sum().backward()
    assert x.grad.shape == x.shape and off.grad.shape == off.shape and w.grad.shape == w.shape
