"""EDVR end to end: a training step and video inference, ours vs the same EDVR with torchvision's DCN and vs
the conv floor, on the same weights and input (TARGETS.md's cases on CUDA, small ones on the CPU).

`ours` is our EDVR as a user gets it: our DCN, the Restorer's shipped defaults (per-frame feature cache).
`torchvision` is the same EDVR with `torchvision.ops.deform_conv2d` in every DCN, fp32, run the way
BasicSR runs it (the whole model per window). `conv-floor` replaces each deformable conv by a plain conv
of the same shape; the offset/mask convs stay (forward and backward), only the sampling goes. Units:
one training step, one restored frame (a timed round is one clip of >= 50 frames on CUDA).
`model` inference starts from frames already on the device; `e2e` decodes a video, restores it through
`Restorer` and encodes the result (OpenCV mp4v, in the benchmark's temporary folder).
"""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edvr_fast.data.frames import read_clip_frames
from edvr_fast.inference.engine import RestoreOptions, Restorer, frame_to_tensor, tensor_to_frame
from edvr_fast.models import EDVR, build, preset
from edvr_fast.models.blocks import AlignDCN
from edvr_fast.train.demo import DEMO

tv_ops = pytest.importorskip("torchvision.ops", reason="torchvision is the baseline (pip install .[test])")

IMPLS = ["ours", "torchvision", "conv-floor"]


class _TorchvisionDCN(AlignDCN):
    """The same pack (offset/mask convs, clamp) sampling with torchvision.ops.deform_conv2d."""

    def forward(self, input, feat):  # type: ignore[override]
        offset, mask = self.offset_mask(feat)
        if self.max_offset is not None:
            offset = offset.clamp(-self.max_offset, self.max_offset)
        return tv_ops.deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding,
                                    self.dilation, mask=mask)


class _FloorDCN(AlignDCN):
    """A plain conv of the DCN's shape; the offset/mask convs still run and get gradients (x 0 keeps them
    in the graph), so only the deformable sampling is gone."""

    def forward(self, input, feat):  # type: ignore[override]
        offset, mask = self.offset_mask(feat)
        out = F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return out + (offset.mean() + mask.mean()) * 0


def _model(name: str, impl: str, device: str, **overrides) -> EDVR:
    """A seeded EDVR (same weights for every impl; small random offsets so the DCNs really sample)."""
    torch.manual_seed(0)
    model = build(preset(name) if not overrides else preset(name).replace(**overrides))
    with torch.no_grad():
        for m in model.dcn_modules().values():
            m.conv_offset.weight.normal_(0, 1e-3)
    model = copy.deepcopy(model)
    swap = {"torchvision": _TorchvisionDCN, "conv-floor": _FloorDCN}.get(impl)
    for m in model.dcn_modules().values():
        if swap is not None:
            m.__class__ = swap
    return model.to(device)


def _peak(device: str, fn, calls: int) -> dict:
    """Runs `fn` `calls` times (the warm-up) and returns the peak GPU memory of those calls."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(calls):
        fn()
    if device != "cuda":
        return {}
    torch.cuda.synchronize()
    return dict(peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3))


# ----------------------------------------------------------------------------------------- training step
# (preset, overrides, batch, LQ size): TARGETS.md on CUDA; on the CPU a few seconds per step at most.
TRAIN_CUDA = {"edvr-m-sr4 b16 64x64": ("edvr-m-sr4", {}, 16, 64),
              "edvr-m-deblur b16 256x256": ("edvr-m-deblur", {}, 16, 256),
              "edvr-l-sr4 b16 64x64": ("edvr-l-sr4", {}, 16, 64)}
# The built-in default run's model (edvr_fast/train/demo.py), deblurring at scale 1.
DEFAULT_MODEL = {k.split(".", 1)[1]: v for k, v in DEMO.items() if k.startswith("model.")}
TRAIN_CPU = {"default-run b4 32x32": ("edvr-m-deblur", dict(DEFAULT_MODEL, hr_in=False, with_predeblur=False), 4, 32),
             "edvr-m-sr4 b2 32x32": ("edvr-m-sr4", {}, 2, 32)}


def _train_case(measure, benchmark, cases, case, device, impl, precision):
    name, overrides, batch, size = cases[case]
    # torchvision has no bf16 DCN: the baseline of the bf16 goal is its fp32 step.
    precision_run = "fp32" if impl == "torchvision" else precision
    model = _model(name, impl, device, **overrides).train()
    p = model.params
    g = torch.Generator().manual_seed(1)
    lq = torch.rand(batch, p.num_frame, 3, size, size, generator=g).to(device)
    gt = torch.rand(batch, 3, size * p.scale, size * p.scale, generator=g).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    bf16 = precision_run == "bf16"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out = model(lq)
        loss = torch.sqrt((out.float() - gt) ** 2 + 1e-6).mean()  # Charbonnier
        loss.backward()
        opt.step()

    cuda = device == "cuda"
    info = _peak(device, step, 0 if benchmark.disabled else 3 if cuda else 1)
    measure(step, group=f"train {case} {precision}", impl=impl if precision_run == precision else f"{impl} fp32",
            device=device, inner=5 if cuda else 1, rounds=4 if cuda else 2, warmup=0, unit="step",
            precision=precision_run, batch=batch, size=size, **info)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(TRAIN_CPU))
def test_train_step_cpu(measure, benchmark, case, impl):
    _train_case(measure, benchmark, TRAIN_CPU, case, "cpu", impl, "fp32")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("case", list(TRAIN_CUDA))
def test_train_step_cuda(measure, benchmark, cuda_only, case, precision, impl):
    if precision == "bf16" and not case.startswith("edvr-m-sr4"):
        pytest.skip("bf16 step goal is EDVR-M SRx4's; the other presets are timed in fp32 (device time)")
    _train_case(measure, benchmark, TRAIN_CUDA, case, "cuda", impl, precision)


# -------------------------------------------------------------------------------------------- inference
# (preset, LQ height, LQ width, frames in the clip)
INFER_CUDA = {"edvr-m-sr4 180x320": ("edvr-m-sr4", 180, 320, 50),
              "edvr-l-sr4 180x320": ("edvr-l-sr4", 180, 320, 50),
              "edvr-m-deblur 720x1280": ("edvr-m-deblur", 720, 1280, 50)}
# The CPU goal sizes (TARGETS: EDVR-M SRx4 90x160, the deblur preset 180x320); a short clip each.
INFER_CPU = {"edvr-m-sr4 90x160": ("edvr-m-sr4", 90, 160, 8),
             "edvr-m-deblur 180x320": ("edvr-m-deblur", 180, 320, 8)}


def _clip(h: int, w: int, n: int) -> list[np.ndarray]:
    """Smooth moving frames (uint8 BGR): a pan over a fixed random texture, as a camera would see it."""
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (h // 8 + 2, (w + 2 * n) // 8 + 2, 3), dtype=np.uint8)
    big = cv2.resize(small, (small.shape[1] * 8, small.shape[0] * 8), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(big[:h, 2 * i : 2 * i + w]) for i in range(n)]


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for f in frames:
        writer.write(f)
    writer.release()


def _endless_model(restorer: Restorer, frames: list[torch.Tensor]):
    while True:
        yield from restorer.restore(iter(frames), len(frames))


def _endless_e2e(restorer: Restorer, video: Path, n: int, out: Path):
    while True:
        writer = None
        for img in restorer.restore(read_clip_frames(video), n):
            frame = tensor_to_frame(img)
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25.0,
                                         (frame.shape[1], frame.shape[0]))
            writer.write(frame)
            yield
        writer.release()


def _infer_case(measure, benchmark, tmp_path, cases, case, device, impl, precision, path):
    name, h, w, n = cases[case]
    # torchvision has no bf16 DCN: in a bf16 group its fp32 run is the baseline (as the goal states it).
    run_precision = "fp32" if impl == "torchvision" else precision
    model = _model(name, impl, device)
    ours = impl == "ours"
    # Ours with the Restorer's defaults; the baselines as BasicSR runs them: the whole model per window.
    restorer = Restorer(model, RestoreOptions(bf16=run_precision == "bf16", frame_cache=ours), device)
    frames = _clip(h, w, n)
    if path == "model":
        stream = _endless_model(restorer, [frame_to_tensor(f, torch.device(device)) for f in frames])
    else:
        _write_video(tmp_path / "in.mp4", frames)
        stream = _endless_e2e(restorer, tmp_path / "in.mp4", n, tmp_path / "out.mp4")
    cuda = device == "cuda"
    # Warm-up: a whole clip on CUDA (allocator, cuDNN autotuning), one batch on the CPU; none in the smoke pass.
    warm = 0 if benchmark.disabled else n if cuda else restorer.options.batch
    info = _peak(device, lambda: next(stream), warm)
    label = impl if run_precision == precision else f"{impl} fp32"
    measure(lambda: next(stream), group=f"infer {path} {case} {precision}", impl=label, device=device,
            inner=n, rounds=2, warmup=0, unit="frame", precision=run_precision, clip_frames=n,
            frame_cache=restorer.frame_cache, **info)
    stream.close()
    if cuda:
        torch.cuda.empty_cache()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("path", ["model", "e2e"])
@pytest.mark.parametrize("case", list(INFER_CPU))
def test_infer_cpu(measure, benchmark, tmp_path, case, path, impl):
    if path == "e2e" and impl == "conv-floor":
        pytest.skip("the floor is a model-only reference")
    _infer_case(measure, benchmark, tmp_path, INFER_CPU, case, "cpu", impl, "fp32", path)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("path", ["model", "e2e"])
@pytest.mark.parametrize("case", list(INFER_CUDA))
def test_infer_cuda(measure, benchmark, cuda_only, tmp_path, case, path, precision, impl):
    if path == "e2e" and (impl == "conv-floor" or precision == "bf16"):
        pytest.skip("end to end: ours and torchvision in fp32 (device time; the model rows hold bf16)")
    _infer_case(measure, benchmark, tmp_path, INFER_CUDA, case, "cuda", impl, precision, path)

