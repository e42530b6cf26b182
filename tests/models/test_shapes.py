"""Output shapes for every preset and every layout x scale, odd sizes, padding and input checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from edvr_fast.errors import ConfigError, InputError
from edvr_fast.models import EDVR, EDVRParams, build, preset, preset_names

LAYOUTS = list(itertools.product([False, True], [False, True], [False, True], [1, 2, 4]))


@pytest.mark.parametrize("hr_in,predeblur,tsa,scale", LAYOUTS)
def test_every_layout_and_scale_gives_scaled_output(tiny, hr_in, predeblur, tsa, scale):
    model = EDVR(tiny(hr_in=hr_in, with_predeblur=predeblur, with_tsa=tsa, scale=scale))
    x = torch.rand(2, 3, 3, 16, 16)
    out = model(x)
    assert out.shape == (2, 3, 16 * scale, 16 * scale)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_builds_with_its_published_shape(name):
    p = preset(name)
    # Shrink width and depth only, so the layout (frames, TSA, pre-deblur, hr_in, scale) is the preset's.
    model = build(name, num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)
    x = torch.rand(1, p.num_frame, 3, 16, 16)
    assert model(x).shape == (1, 3, 16 * p.scale, 16 * p.scale)


def test_published_hyper_parameters():
    m, l_ = preset("edvr-m-sr4"), preset("edvr-l-sr4")
    assert (m.num_feat, m.num_extract_block, m.num_reconstruct_block, m.num_frame) == (64, 5, 10, 5)
    assert (l_.num_feat, l_.num_extract_block, l_.num_reconstruct_block, l_.num_frame) == (128, 5, 40, 5)
    assert preset("edvr-l-sr4-vimeo90k").num_frame == 7 and preset("edvr-l-sr4-vimeo90k").center == 3
    deblur = preset("edvr-l-deblur")
    assert deblur.hr_in and deblur.with_predeblur and deblur.scale == 1 and deblur.num_feat == 128
    assert preset("edvr-l-srblur4").with_predeblur and not preset("edvr-l-srblur4").hr_in
    assert not preset("edvr-m-sr4-notsa").with_tsa
    ours = preset("edvr-m-deblur")
    assert (ours.num_feat, ours.hr_in, ours.with_predeblur, ours.scale) == (64, True, True, 1)
    assert preset("edvr-l-sr4-stage2").num_reconstruct_block == 20


@pytest.mark.parametrize("hr_in", [False, True])
@pytest.mark.parametrize("pad_mode", ["replicate", "reflect"])
def test_odd_sizes_pad_and_crop(tiny, hr_in, pad_mode):
    model = EDVR(tiny(hr_in=hr_in, with_predeblur=hr_in, scale=2, pad_mode=pad_mode)).eval()
    x = torch.rand(1, 3, 3, 21, 19)
    out = model(x)
    assert out.shape == (1, 3, 42, 38)
    # The result is the network on the padded frames, cropped: pad by hand and compare.
    m = 16 if hr_in else 4
    padded = torch.nn.functional.pad(x.reshape(3, 3, 21, 19), (0, (-19) % m, 0, (-21) % m), mode=pad_mode)
    ref = model(padded.reshape(1, 3, 3, *padded.shape[-2:]))[..., :42, :38]
    torch.testing.assert_close(out, ref)


def test_pad_mode_setting_is_used(tiny):
    torch.manual_seed(0)
    a = EDVR(tiny(pad_mode="replicate", scale=1)).eval()
    b = EDVR(tiny(pad_mode="reflect", scale=1)).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 3, 3, 18, 18)
    assert not torch.allclose(a(x), b(x))


def test_wrong_input_shape_is_an_input_error(tiny):
    model = EDVR(tiny())
    with pytest.raises(InputError, match=r"\[B, 3, 3, H, W\]"):
        model(torch.rand(1, 5, 3, 16, 16))
    with pytest.raises(InputError):
        model(torch.rand(3, 3, 16, 16))
    reflect = EDVR(tiny(pad_mode="reflect", hr_in=True))
    with pytest.raises(InputError, match="replicate"):
        reflect(torch.rand(1, 3, 3, 5, 5))


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="scale"):
        EDVRParams(scale=3)
    with pytest.raises(ConfigError, match="deformable_groups"):
        EDVRParams(num_feat=10, deformable_groups=4)
    with pytest.raises(ConfigError, match="center_frame_idx"):
        EDVRParams(num_frame=3, center_frame_idx=3)
    with pytest.raises(ConfigError, match="pad_mode"):
        EDVRParams(pad_mode="zeros")
    with pytest.raises(ConfigError, match="unknown EDVR preset"):
        preset("edvr-xl")
    with pytest.raises(ConfigError, match="unknown EDVR parameter"):
        build("edvr-m-sr4", nf=32)
    with pytest.raises(ConfigError, match="unknown EDVR parameter"):
        EDVRParams.from_dict({"num_feat": 8, "groups": 2})


def test_params_dict_round_trip():
    p = preset("edvr-l-deblur").replace(max_offset=12.5, pad_mode="reflect")
    assert EDVRParams.from_dict(p.to_dict()) == p
