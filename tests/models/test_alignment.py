"""Batched PCD equals the per-frame computation; offset statistics, the max_offset clamp and the
parameter groups training relies on."""

from __future__ import annotations

import torch

from edvr_fast.models import EDVR
from edvr_fast.models.pcd import PCDAlignment


def test_batched_pcd_equals_per_frame_loop(tiny, scramble):
    torch.manual_seed(0)
    pcd = PCDAlignment(8, 2)
    scramble(pcd, std=0.2)
    b, t, c = 2, 5, 3
    pyr = [torch.rand(b, t, 8, 16 // 2**i, 16 // 2**i) for i in range(3)]
    ref = [f[:, c] for f in pyr]
    looped = torch.stack([pcd([f[:, i] for f in pyr], ref) for i in range(t)], dim=1)
    n = b * t
    batched = pcd([f.reshape(n, *f.shape[2:]) for f in pyr],
                  [r.unsqueeze(1).expand(b, t, *r.shape[1:]).reshape(n, *r.shape[1:]) for r in ref])
    torch.testing.assert_close(batched.reshape(b, t, *batched.shape[1:]), looped, rtol=1e-5, atol=1e-6)
    # The model calls each DCN once per forward, with every frame in one batch.
    calls = []
    model = EDVR(tiny())
    for m in model.dcn_modules().values():
        m.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    model(torch.rand(2, 3, 3, 16, 16))
    assert calls == [2 * 3] * 4


def test_offset_stats_accumulate_on_device_and_reset(tiny, scramble):
    model = EDVR(tiny())
    assert model.offset_stats().tolist() == [0.0, 0.0]  # zero offsets at initialisation
    scramble(model)
    x = torch.rand(1, 3, 3, 16, 16)
    # What the DCNs see, recomputed by hand from their offset branches.
    seen = []
    for m in model.dcn_modules().values():
        m.register_forward_hook(lambda mod, inp, out: seen.append(mod.offset_mask(inp[1])[0].abs()))
    model(x)
    model(x * 0.5)
    stats = model.offset_stats()
    assert stats.shape == (2,) and stats.device == x.device
    torch.testing.assert_close(stats[0], torch.stack([s.mean() for s in seen]).mean())
    torch.testing.assert_close(stats[1], torch.stack([s.max() for s in seen]).max())
    assert model.offset_stats().tolist() == [0.0, 0.0]  # read resets
    model(x)
    per = model.offset_stats(per_dcn=True)
    assert per.shape == (4, 2) and (per[:, 1] >= per[:, 0]).all() and (per > 0).all()
    model.track_offset_stats(False)
    model(x)
    assert model.offset_stats().tolist() == [0.0, 0.0]


def test_max_offset_clamps_what_the_dcn_uses(tiny, scramble):
    free, clamped = EDVR(tiny()), EDVR(tiny(max_offset=0.05))
    scramble(free, std=0.3)
    clamped.load_state_dict(free.state_dict())
    x = torch.rand(1, 3, 3, 16, 16)
    assert not torch.allclose(free(x), clamped(x))
    assert clamped.offset_stats()[1] > 0.05  # statistics are taken before the clamp
    # Clamping to a bound no offset reaches changes nothing.
    loose = EDVR(tiny(max_offset=1e4))
    loose.load_state_dict(free.state_dict())
    torch.testing.assert_close(loose(x), free(x))


def test_parameter_groups(tiny):
    model = EDVR(tiny())
    dcn, rest, fusion = model.dcn_parameters(), model.non_dcn_parameters(), model.fusion_parameters()
    assert len(dcn) == 4 * 4  # weight, bias, conv_offset.weight, conv_offset.bias per DCN
    assert {id(p) for p in dcn}.isdisjoint(id(p) for p in rest)
    assert len(dcn) + len(rest) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(".dcn." in names[id(p)] for p in dcn)
    assert fusion and all(names[id(p)].startswith("fusion.") for p in fusion)
    assert len(EDVR(tiny(with_tsa=False)).fusion_parameters()) == 2
