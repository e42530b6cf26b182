"""Weight files in: mmagic's EDVRNet layout (with the metadata its checkpoints pickle), safetensors with and
without our metadata, and the errors for files that cannot or must not be read.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edvr_fast.errors import CheckpointError
from edvr_fast.models import EDVR, export_state_dict, layouts, load_pretrained, save_safetensors
from edvr_fast.models.weight_files import metadata_allow_list


def _model(tiny, scramble, seed=0, **kw) -> EDVR:
    torch.manual_seed(seed)
    model = EDVR(tiny(**kw)).eval()
    scramble(model, seed=seed)
    return model


def _fake_mmengine(monkeypatch):
    """A class pickled by reference under mmengine's name, as mmengine's runner saves its message hub."""
    mod = types.ModuleType("mmengine.logging.history_buffer")

    class HistoryBuffer:
        def __init__(self):
            self._log_history = np.arange(4.0)
            self.max_length = 100

    HistoryBuffer.__module__ = mod.__name__
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    mod.HistoryBuffer = HistoryBuffer
    for name in ("mmengine", "mmengine.logging"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return HistoryBuffer


def _mmagic_file(path, model, monkeypatch, ema=None):
    buf = _fake_mmengine(monkeypatch)()
    sd = {"generator." + k: v for k, v in export_state_dict(model, "mmagic").items()}
    if ema is not None:
        sd.update({"generator_ema." + k: v for k, v in export_state_dict(ema, "mmagic").items()})
    sd["data_preprocessor.mean"] = torch.zeros(1, 3, 1, 1)
    torch.save({"meta": {"iter": np.int64(600000), "seed": np.int32(0), "lr": np.float64(4e-4),
                         "mmengine_version": "0.10.4", "cfg": "model = dict(type='EDVR', ...)"},
                "state_dict": sd,
                "message_hub": {"log_scalars": {"train/loss": buf}, "runtime_info": {"iter": np.int64(5)}}},
               path)


@pytest.mark.parametrize("kw", [dict(scale=4), dict(scale=4, with_tsa=False), dict(scale=4, center_frame_idx=0)])
def test_mmagic_checkpoint_loads_to_identical_outputs(tiny, scramble, tmp_path, monkeypatch, kw):
    model = _model(tiny, scramble, **kw)
    path = tmp_path / "edvrm_x4_8x4_600k_reds.pth"
    _mmagic_file(path, model, monkeypatch)
    monkeypatch.delitem(sys.modules, "mmengine.logging.history_buffer")  # not installed where it is read
    loaded = load_pretrained(path, preset=model.params if "center_frame_idx" in kw else None)
    assert loaded.params == model.params
    x = torch.rand(1, 3, 3, 16, 20)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_mmagic_prefers_the_ema_generator(tiny, scramble, tmp_path, monkeypatch):
    plain, ema = _model(tiny, scramble, 1), _model(tiny, scramble, 2)
    _mmagic_file(tmp_path / "m.pth", plain, monkeypatch, ema=ema)
    x = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "m.pth")(x), ema(x))


def test_mmagic_names_mean_what_mmagic_means(tiny):
    """Spot checks against mmagic's EDVRNet definition (ConvModule keeps its conv under `.conv`)."""
    model = EDVR(tiny())
    sd, ours = export_state_dict(model, "mmagic"), model.state_dict()
    pairs = {
        "feat_l2_conv1.conv.weight": "conv_l2_1.weight",
        "pcd_alignment.offset_conv1.l3.conv.weight": "pcd.l3.offset_conv1.weight",
        "pcd_alignment.dcn_pack.l2.conv_offset.bias": "pcd.l2.dcn.conv_offset.bias",
        "pcd_alignment.dcn_pack.l1.weight": "pcd.l1.dcn.weight",
        "pcd_alignment.feat_conv.l2.conv.bias": "pcd.l2.feat_conv.bias",
        "pcd_alignment.cas_offset_conv2.conv.weight": "pcd.cascade.offset_conv2.weight",
        "pcd_alignment.cas_dcnpack.conv_offset.weight": "pcd.cascade.dcn.conv_offset.weight",
        "fusion.temporal_attn1.weight": "fusion.ref_embed.weight",  # embeds the centre frame
        "fusion.feat_fusion.conv.weight": "fusion.feat_fusion.weight",
        "fusion.spatial_attn5.weight": "fusion.spatial5.weight",  # a plain conv in mmagic
        "fusion.spatial_attn_add2.bias": "fusion.spatial_add2.bias",
        "fusion.spatial_attn_l2.conv.weight": "fusion.spatial_l2.weight",
        "upsample2.upsample_conv.weight": "upsample.1.weight",
    }
    for theirs, mine in pairs.items():
        assert torch.equal(sd[theirs], ours[mine]), theirs
    assert layouts.detect_layout(sd) == layouts.MMAGIC and len(sd) == len(ours)


def test_mmagic_cannot_express_predeblur(tiny):
    with pytest.raises(CheckpointError, match="mmagic EDVR has no equivalent"):
        export_state_dict(EDVR(tiny(with_predeblur=True)), "mmagic")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_unlisted_globals_are_refused_with_their_names(tmp_path, tiny):
    torch.save({"state_dict": EDVR(tiny()).state_dict(), "meta": {"x": _Payload()}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"(?s)evil\.pth.*builtins\.print.*re-save only the weights"):
        load_pretrained(tmp_path / "evil.pth")
    assert all(why for why in metadata_allow_list().values())


def test_safetensors_round_trip_needs_no_preset(tiny, scramble, tmp_path):
    model = _model(tiny, scramble, center_frame_idx=0, with_tsa=False, scale=2, pad_mode="reflect",
                   max_offset=3.5)
    path = save_safetensors(model, tmp_path / "w.safetensors")
    loaded = load_pretrained(path)
    assert loaded.params == model.params  # everything, including what weights cannot show
    x = torch.rand(1, 3, 3, 14, 18)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    renamed = tmp_path / "w.bin"  # found by its header, not its name
    renamed.write_bytes(path.read_bytes())
    assert load_pretrained(renamed).params == model.params


def test_foreign_safetensors_layout_is_detected(tiny, scramble, tmp_path):
    model = _model(tiny, scramble)
    save_file(export_state_dict(model, "basicsr"), str(tmp_path / "basicsr.safetensors"))
    x = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "basicsr.safetensors")(x), model(x))


def test_safetensors_of_another_architecture_names_missing_and_unexpected(tiny, tmp_path):
    save_safetensors(EDVR(tiny(with_tsa=False)), tmp_path / "notsa.safetensors")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(tmp_path / "notsa.safetensors", preset=tiny())
    msg = str(err.value)
    assert "notsa.safetensors" in msg and "missing" in msg and "fusion.ref_embed.weight" in msg
    assert "unexpected" in msg and "fusion.weight" in msg


def test_broken_safetensors_files(tmp_path, tiny):
    (tmp_path / "t.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError, match="cannot read the safetensors"):
        load_pretrained(tmp_path / "t.safetensors")
    save_file(EDVR(tiny()).state_dict(), str(tmp_path / "v.safetensors"),
              metadata={"format": "edvr_fast", "format_version": "99", "model_params": "{}"})
    with pytest.raises(CheckpointError, match="format_version"):
        load_pretrained(tmp_path / "v.safetensors")
