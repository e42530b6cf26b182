"""The model under torch.compile (no graph breaks), bf16 autocast, channels_last, and training."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edvr_fast.models import EDVR


def test_compile_fullgraph_without_graph_breaks(tiny, scramble):
    torch._dynamo.reset()
    model = EDVR(tiny(hr_in=True, with_predeblur=True, max_offset=4.0, scale=1))
    scramble(model)
    x = torch.rand(1, 3, 3, 17, 18)  # odd size: the padding path is traced too
    with torch.no_grad():
        eager = model(x)
    model.offset_stats()
    # aot_eager traces through dynamo (fullgraph: any graph break raises) and AOTAutograd
    # (fake kernels, functionalised buffer updates) without paying for code generation.
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)
    assert model.offset_stats()[1] > 0  # the in-place statistics survived compilation
    out.mean().backward()
    assert model.predeblur.conv_first.weight.grad is not None and model.pcd.l1.dcn.weight.grad is not None


def test_bf16_autocast_and_channels_last(tiny, scramble):
    model = EDVR(tiny(scale=2))
    scramble(model)
    x = torch.rand(2, 3, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
        assert low.shape == ref.shape and torch.isfinite(low).all()
        assert (low.float() - ref).abs().mean() < 0.05
        model = model.to(memory_format=torch.channels_last)
        xcl = x.reshape(6, 3, 16, 16).contiguous(memory_format=torch.channels_last).reshape(2, 3, 3, 16, 16)
        assert not xcl.is_contiguous()
        torch.testing.assert_close(model(xcl), ref, rtol=1e-4, atol=1e-5)


def test_a_few_optimisation_steps_reduce_the_loss(tiny):
    torch.manual_seed(0)
    model = EDVR(tiny(scale=2))
    x = torch.rand(2, 3, 3, 16, 16)
    target = F.interpolate(x[:, 1], scale_factor=2, mode="bilinear", align_corners=False)
    target = target + 0.2  # a brightness change the residual branch must learn
    opt = torch.optim.Adam([{"params": model.non_dcn_parameters()},
                            {"params": model.dcn_parameters(), "lr": 5e-4}], lr=3e-3)

    def loss_fn() -> torch.Tensor:
        return torch.sqrt((model(x) - target) ** 2 + 1e-6).mean()  # Charbonnier

    first = loss_fn().item()
    for _ in range(25):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss_fn().item() < 0.5 * first
    assert model.pcd.l1.dcn.conv_offset.weight.abs().sum() > 0  # the offset branch trained too
