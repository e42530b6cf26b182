"""Checkpoint import: original EDVR and BasicSR layouts, our format, inference, and the errors.

The original layout is checked against an independent functional forward written from the public
architecture definition (per-frame PCD loop, the original's key names), not against our own mapping.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edvr_fast.errors import CheckpointError
from edvr_fast.models import EDVR, build, export_state_dict, layouts, load_pretrained, preset, preset_names
from edvr_fast.models.checkpoints import convert_state_dict
from edvr_fast.ops import modulated_deform_conv2d


# ------------------------------------------------ independent forward in the original repository's names
def _conv(sd, name, x, stride=1):
    w = sd[name + ".weight"]
    return F.conv2d(x, w, sd[name + ".bias"], stride, w.shape[-1] // 2)


def _lrelu(x):
    return F.leaky_relu(x, 0.1)


def _up(x):
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def _rb(sd, name, x):
    return x + _conv(sd, name + ".conv2", F.relu(_conv(sd, name + ".conv1", x)))


def _dcn(sd, name, x, feat, groups):
    o1, o2, m = _conv(sd, name + ".conv_offset_mask", feat).chunk(3, dim=1)
    return modulated_deform_conv2d(x, torch.cat([o1, o2], 1), m.sigmoid(), sd[name + ".weight"],
                                   sd[name + ".bias"], 1, 1, 1, 1, groups)


def _pcd(sd, nbr, ref, g):
    P = "pcd_align."
    o3 = _lrelu(_conv(sd, P + "L3_offset_conv1", torch.cat([nbr[2], ref[2]], 1)))
    o3 = _lrelu(_conv(sd, P + "L3_offset_conv2", o3))
    f3 = _lrelu(_dcn(sd, P + "L3_dcnpack", nbr[2], o3, g))
    o2 = _lrelu(_conv(sd, P + "L2_offset_conv1", torch.cat([nbr[1], ref[1]], 1)))
    o2 = _lrelu(_conv(sd, P + "L2_offset_conv2", torch.cat([o2, _up(o3) * 2], 1)))
    o2 = _lrelu(_conv(sd, P + "L2_offset_conv3", o2))
    f2 = _dcn(sd, P + "L2_dcnpack", nbr[1], o2, g)
    f2 = _lrelu(_conv(sd, P + "L2_fea_conv", torch.cat([f2, _up(f3)], 1)))
    o1 = _lrelu(_conv(sd, P + "L1_offset_conv1", torch.cat([nbr[0], ref[0]], 1)))
    o1 = _lrelu(_conv(sd, P + "L1_offset_conv2", torch.cat([o1, _up(o2) * 2], 1)))
    o1 = _lrelu(_conv(sd, P + "L1_offset_conv3", o1))
    f1 = _dcn(sd, P + "L1_dcnpack", nbr[0], o1, g)
    f1 = _conv(sd, P + "L1_fea_conv", torch.cat([f1, _up(f2)], 1))
    o = _lrelu(_conv(sd, P + "cas_offset_conv1", torch.cat([f1, ref[0]], 1)))
    o = _lrelu(_conv(sd, P + "cas_offset_conv2", o))
    return _lrelu(_dcn(sd, P + "cas_dcnpack", f1, o, g))


def _tsa(sd, aligned, center):
    T = "tsa_fusion."
    B, N, C, H, W = aligned.shape
    emb_ref = _conv(sd, T + "tAtt_2", aligned[:, center])
    emb = _conv(sd, T + "tAtt_1", aligned.reshape(-1, C, H, W)).reshape(B, N, -1, H, W)
    cor = torch.cat([torch.sum(emb[:, i] * emb_ref, 1, keepdim=True) for i in range(N)], 1).sigmoid()
    aligned = aligned.reshape(B, -1, H, W) * cor.unsqueeze(2).repeat(1, 1, C, 1, 1).reshape(B, -1, H, W)
    fea = _lrelu(_conv(sd, T + "fea_fusion", aligned))
    pool = lambda a: torch.cat([F.max_pool2d(a, 3, 2, 1), F.avg_pool2d(a, 3, 2, 1)], 1)  # noqa: E731
    att = _lrelu(_conv(sd, T + "sAtt_1", aligned))
    att = _lrelu(_conv(sd, T + "sAtt_2", pool(att)))
    att_l = _lrelu(_conv(sd, T + "sAtt_L1", att))
    att_l = _lrelu(_conv(sd, T + "sAtt_L2", pool(att_l)))
    att_l = _up(_lrelu(_conv(sd, T + "sAtt_L3", att_l)))
    att = _lrelu(_conv(sd, T + "sAtt_3", att)) + att_l
    att = _conv(sd, T + "sAtt_5", _up(_lrelu(_conv(sd, T + "sAtt_4", att))))
    att_add = _conv(sd, T + "sAtt_add_2", _lrelu(_conv(sd, T + "sAtt_add_1", att)))
    return fea * att.sigmoid() * 2 + att_add


def original_forward(sd, x, p):
    B, N, C, H, W = x.shape
    frames = x.reshape(-1, C, H, W)
    if p.with_predeblur:
        D = "pre_deblur."
        if p.hr_in:
            l1 = _lrelu(_conv(sd, D + "conv_first_1", frames))
            l1 = _lrelu(_conv(sd, D + "conv_first_3", _lrelu(_conv(sd, D + "conv_first_2", l1, 2)), 2))
        else:
            l1 = _lrelu(_conv(sd, D + "conv_first", frames))
        l2 = _lrelu(_conv(sd, D + "deblur_L2_conv", l1, 2))
        l3 = _lrelu(_conv(sd, D + "deblur_L3_conv", l2, 2))
        l3 = _up(_rb(sd, D + "RB_L3_1", l3))
        l2 = _up(_rb(sd, D + "RB_L2_2", _rb(sd, D + "RB_L2_1", l2) + l3))
        l1 = _rb(sd, D + "RB_L1_2", _rb(sd, D + "RB_L1_1", l1)) + l2
        l1 = _rb(sd, D + "RB_L1_5", _rb(sd, D + "RB_L1_4", _rb(sd, D + "RB_L1_3", l1)))
        L1 = _conv(sd, "conv_1x1", l1)
    elif p.hr_in:
        L1 = _lrelu(_conv(sd, "conv_first_1", frames))
        L1 = _lrelu(_conv(sd, "conv_first_3", _lrelu(_conv(sd, "conv_first_2", L1, 2)), 2))
    else:
        L1 = _lrelu(_conv(sd, "conv_first", frames))
    for i in range(p.num_extract_block):
        L1 = _rb(sd, f"feature_extraction.{i}", L1)
    L2 = _lrelu(_conv(sd, "fea_L2_conv2", _lrelu(_conv(sd, "fea_L2_conv1", L1, 2))))
    L3 = _lrelu(_conv(sd, "fea_L3_conv2", _lrelu(_conv(sd, "fea_L3_conv1", L2, 2))))
    pyr = [f.reshape(B, N, *f.shape[1:]) for f in (L1, L2, L3)]
    c = p.center
    ref = [f[:, c] for f in pyr]
    aligned = torch.stack([_pcd(sd, [f[:, i] for f in pyr], ref, p.deformable_groups) for i in range(N)], 1)
    if p.with_tsa:
        fea = _tsa(sd, aligned, c)
    else:
        fea = _conv(sd, "tsa_fusion", aligned.reshape(B, -1, *aligned.shape[-2:]))
    out = fea
    for i in range(p.num_reconstruct_block):
        out = _rb(sd, f"recon_trunk.{i}", out)
    out = _lrelu(F.pixel_shuffle(_conv(sd, "upconv1", out), 2))
    out = _lrelu(F.pixel_shuffle(_conv(sd, "upconv2", out), 2))
    out = _conv(sd, "conv_last", _lrelu(_conv(sd, "HRconv", out)))
    base = x[:, c] if p.hr_in else F.interpolate(x[:, c], scale_factor=4, mode="bilinear",
                                                  align_corners=False)
    return out + base


PUBLISHED_LAYOUTS = {
    "sr": dict(scale=4),
    "sr-notsa": dict(scale=4, with_tsa=False),
    "srblur": dict(scale=4, with_predeblur=True),
    "deblur": dict(scale=1, with_predeblur=True, hr_in=True),
    "stage2": dict(scale=1, hr_in=True),
}


def _random_model(tiny, scramble, seed=0, **kw) -> EDVR:
    torch.manual_seed(seed)
    model = EDVR(tiny(**kw)).eval()
    scramble(model, seed=seed)
    return model


@pytest.mark.parametrize("kind", list(PUBLISHED_LAYOUTS))
def test_original_layout_loads_and_matches_the_original_forward(tiny, scramble, tmp_path, kind):
    kw = PUBLISHED_LAYOUTS[kind]
    model = _random_model(tiny, scramble, **kw)
    sd = export_state_dict(model, "original")
    path = tmp_path / "edvr_original.pth"
    torch.save({"module." + k: v for k, v in sd.items()}, path)  # as saved from DataParallel
    loaded = load_pretrained(path)
    assert loaded.params == model.params  # architecture inferred from keys and shapes alone
    size = 32 if kw.get("hr_in") else 16
    x = torch.rand(2, 3, 3, size, size)
    with torch.no_grad():
        ref = original_forward(sd, x, model.params)
        ours = loaded(x)
    assert loaded.offset_stats()[1] > 0.01  # offsets were really used
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_original_temporal_attention_convs_are_swapped(tiny, scramble, tmp_path):
    """Swapping tAtt_1 and tAtt_2 in a file must change the output: the mapping is not symmetric."""
    model = _random_model(tiny, scramble)
    sd = export_state_dict(model, "original")
    swapped = dict(sd)
    for leaf in ("weight", "bias"):
        swapped[f"tsa_fusion.tAtt_1.{leaf}"] = sd[f"tsa_fusion.tAtt_2.{leaf}"]
        swapped[f"tsa_fusion.tAtt_2.{leaf}"] = sd[f"tsa_fusion.tAtt_1.{leaf}"]
    torch.save(swapped, tmp_path / "s.pth")
    x = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(load_pretrained(tmp_path / "s.pth")(x), model(x), atol=1e-4)
        torch.testing.assert_close(original_forward(swapped, x, model.params),
                                   load_pretrained(tmp_path / "s.pth")(x), rtol=1e-4, atol=1e-5)


def test_basicsr_names_mean_what_basicsr_means(tiny):
    """Spot checks of the BasicSR mapping taken from its architecture definition."""
    model = EDVR(tiny(with_predeblur=True, hr_in=True, scale=1))
    sd = export_state_dict(model, "basicsr")
    ours = model.state_dict()
    pairs = {
        "fusion.temporal_attn1.weight": "fusion.ref_embed.weight",  # embeds the centre frame
        "fusion.temporal_attn2.weight": "fusion.nbr_embed.weight",
        "pcd_align.dcn_pack.l3.conv_offset.weight": "pcd.l3.dcn.conv_offset.weight",
        "pcd_align.offset_conv2.l2.weight": "pcd.l2.offset_conv2.weight",
        "pcd_align.feat_conv.l1.bias": "pcd.l1.feat_conv.bias",
        "predeblur.stride_conv_hr1.weight": "predeblur.down_hr1.weight",
        "predeblur.resblock_l1.4.conv2.weight": "predeblur.res_l1.4.conv2.weight",
        "conv_hr.weight": "conv_hr.weight",
        "upconv2.weight": "upsample.1.weight",
        "reconstruction.0.conv1.weight": "reconstruction.0.conv1.weight",
    }
    for theirs, mine in pairs.items():
        assert torch.equal(sd[theirs], ours[mine]), theirs


@pytest.mark.parametrize("kind", ["sr", "sr-notsa", "srblur", "deblur"])
def test_basicsr_layout_round_trips_and_prefers_ema(tiny, scramble, tmp_path, kind):
    kw = PUBLISHED_LAYOUTS[kind]
    ema, plain = _random_model(tiny, scramble, 1, **kw), _random_model(tiny, scramble, 2, **kw)
    path = tmp_path / "basicsr.pth"
    torch.save({"params": export_state_dict(plain, "basicsr"),
                "params_ema": {"module." + k: v for k, v in export_state_dict(ema, "basicsr").items()}}, path)
    loaded = load_pretrained(path)
    x = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), ema(x))
    torch.save({"params": export_state_dict(plain, "basicsr")}, path)
    with torch.no_grad():
        assert torch.equal(load_pretrained(path)(x), plain(x))
    # The same weights in the original layout give the same model.
    a, _ = convert_state_dict(export_state_dict(ema, "original"), layouts.ORIGINAL)
    b, _ = convert_state_dict(export_state_dict(ema, "basicsr"), layouts.BASICSR)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_our_checkpoint_format_and_bare_state_dict(tiny, scramble, tmp_path):
    model = _random_model(tiny, scramble, center_frame_idx=0, scale=2)
    torch.save({"format": "edvr_fast", "model_params": model.params.to_dict(), "model": model.state_dict(),
                "step": 10}, tmp_path / "ours.pth")
    loaded = load_pretrained(tmp_path / "ours.pth", pad_mode="reflect")
    assert loaded.params == model.params.replace(pad_mode="reflect")  # stored params, not a guess
    x = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    torch.save(model.state_dict(), tmp_path / "bare.pth")
    bare = load_pretrained(tmp_path / "bare.pth")
    assert bare.params == model.params.replace(center_frame_idx=None)  # the centre cannot be seen
    assert load_pretrained(tmp_path / "bare.pth", preset=model.params).params.center == 0


@pytest.mark.parametrize("name", preset_names())
def test_architecture_inferred_from_keys_for_every_preset(name):
    with torch.device("meta"):
        model = build(name)
    want = preset(name).replace(center_frame_idx=None)
    for layout in layouts.LAYOUTS:
        if (layout == layouts.BASICSR and want.hr_in and not want.with_predeblur) or (
                layout == layouts.MMAGIC and (want.hr_in or want.with_predeblur)):
            with pytest.raises(CheckpointError, match="no equivalent|two x2 upsampling"):
                export_state_dict(model, layout)
            continue
        sd, _ = convert_state_dict(export_state_dict(model, layout), layout)
        assert layouts.infer_params(sd) == want, layout


def test_preset_given_that_does_not_fit_lists_missing_and_unexpected(tiny, tmp_path):
    model = EDVR(tiny(with_tsa=False))
    torch.save(export_state_dict(model, "original"), tmp_path / "m.pth")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path / "m.pth", preset=tiny())
    msg = str(err.value)
    assert "m.pth" in msg and "missing" in msg and "tsa_fusion.tAtt_2.weight" in msg
    assert "unexpected" in msg and "tsa_fusion.weight" in msg


def test_partial_file_is_never_loaded_silently(tiny, tmp_path):
    sd = export_state_dict(EDVR(tiny()), "basicsr")
    del sd["pcd_align.dcn_pack.l2.conv_offset.bias"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save({"params": sd}, tmp_path / "p.pth")
    with pytest.raises(CheckpointError, match=r"(?s)missing \(1\): pcd_align\.dcn_pack\.l2\.conv_offset\.bias"
                       r".*unexpected \(1\): extra\.weight"):
        load_pretrained(tmp_path / "p.pth")


def test_shape_mismatch_is_reported(tiny, tmp_path):
    torch.save(EDVR(tiny(num_frame=5)).state_dict(), tmp_path / "f5.pth")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_pretrained(tmp_path / "f5.pth", preset=tiny(num_frame=3))


def test_unusable_files_raise_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_pretrained(tmp_path / "nope.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not an EDVR state dict"):
        load_pretrained(tmp_path / "other.pth")
    torch.save({"weights": [1, 2]}, tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="no state dict"):
        load_pretrained(tmp_path / "junk.pth")
    (tmp_path / "trunc.pth").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError):
        load_pretrained(tmp_path / "trunc.pth")
    torch.save({"model": torch.nn.Identity()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_pretrained(tmp_path / "pickled.pth")


def test_export_refuses_what_the_published_code_cannot_express(tiny):
    with pytest.raises(CheckpointError, match="two x2 upsampling stages"):
        export_state_dict(EDVR(tiny(scale=2)), "original")
