"""Deployment speed on the CPU: the exported ONNX model in ONNX Runtime against our PyTorch model (same
weights, same input, same thread count), one EDVR-M SRx4 window per call. Export time and file size go
into extra_info.
"""

from __future__ import annotations

import time

import pytest
import torch

ort = pytest.importorskip("onnxruntime")

from edvr_fast.export import ExportSpec, export_model  # noqa: E402
from edvr_fast.models import build  # noqa: E402

SIZE = (64, 64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build("edvr-m-sr4").eval()
    model.track_offset_stats(False)
    path = tmp_path_factory.mktemp("export") / "edvr_m.onnx"
    t0 = time.perf_counter()
    result = export_model(model, path, spec=ExportSpec(*SIZE))
    seconds = time.perf_counter() - t0  # export + checker + the ONNX Runtime check
    threads = torch.get_num_threads()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = torch.rand(1, 5, 3, *SIZE)
    info = dict(export_s=round(seconds, 1), onnx_mb=round(result.bytes / 1e6, 2), threads=threads,
                max_abs_diff=result.max_abs_diff, shape=[1, 5, 3, *SIZE])
    return model, session, x, info


@pytest.mark.parametrize("impl", ["ours", "onnxruntime"])
def test_edvr_m_inference_cpu(measure, exported, impl):
    model, session, x, info = exported
    feed = {"frames": x.numpy()}

    def ours():
        with torch.no_grad():
            model(x)

    def onnxruntime():
        session.run(None, feed)

    fn = ours if impl == "ours" else onnxruntime
    measure(fn, group=f"edvr-m-sr4 window cpu 1x5x3x{SIZE[0]}x{SIZE[1]}", impl=impl, rounds=5, **info)
