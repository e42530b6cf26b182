"""State-dict key layouts of the published EDVR implementations and their mapping onto ours: the
original EDVR repository ("original"), BasicSR ("basicsr") and mmagic's EDVRNet ("mmagic"); detection,
architecture inference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import cache

from torch import Tensor

from edvr_fast.errors import CheckpointError
from edvr_fast.models.params import EDVRParams

OURS, ORIGINAL, BASICSR, MMAGIC = "edvr_fast", "original", "basicsr", "mmagic"
LAYOUTS = (OURS, ORIGINAL, BASICSR, MMAGIC)

# Each pair is (our module path, their module path); {x} stands for a number, {x+1} for that number
# plus one (the original numbers its pre-deblur L1 blocks from 1). A path matches a key up to a dot,
# the rest of the key (".weight", ".conv1.bias", ...) is kept. The first matching pair wins, so the
# more specific paths come first. `cond` limits a pair to one value of hr_in when exporting.
_Pair = tuple[str, str, bool | None]

_ORIGINAL: list[_Pair] = [
    ("predeblur.conv_first", "pre_deblur.conv_first_1", True),
    ("predeblur.conv_first", "pre_deblur.conv_first", False),
    ("predeblur.down_hr1", "pre_deblur.conv_first_2", None),
    ("predeblur.down_hr2", "pre_deblur.conv_first_3", None),
    ("predeblur.down_l2", "pre_deblur.deblur_L2_conv", None),
    ("predeblur.down_l3", "pre_deblur.deblur_L3_conv", None),
    ("predeblur.res_l3", "pre_deblur.RB_L3_1", None),
    ("predeblur.res_l2_1", "pre_deblur.RB_L2_1", None),
    ("predeblur.res_l2_2", "pre_deblur.RB_L2_2", None),
    ("predeblur.res_l1.{i}", "pre_deblur.RB_L1_{i+1}", None),
    ("conv_first", "conv_first_1", True),
    ("conv_first", "conv_first", False),
    ("down_hr1", "conv_first_2", None),
    ("down_hr2", "conv_first_3", None),
    ("conv_1x1", "conv_1x1", None),
    ("feature_extraction", "feature_extraction", None),
    ("conv_l2_1", "fea_L2_conv1", None),
    ("conv_l2_2", "fea_L2_conv2", None),
    ("conv_l3_1", "fea_L3_conv1", None),
    ("conv_l3_2", "fea_L3_conv2", None),
    ("pcd.l{l}.offset_conv{j}", "pcd_align.L{l}_offset_conv{j}", None),
    ("pcd.l{l}.dcn.conv_offset", "pcd_align.L{l}_dcnpack.conv_offset_mask", None),
    ("pcd.l{l}.dcn", "pcd_align.L{l}_dcnpack", None),
    ("pcd.l{l}.feat_conv", "pcd_align.L{l}_fea_conv", None),
    ("pcd.cascade.offset_conv{j}", "pcd_align.cas_offset_conv{j}", None),
    ("pcd.cascade.dcn.conv_offset", "pcd_align.cas_dcnpack.conv_offset_mask", None),
    ("pcd.cascade.dcn", "pcd_align.cas_dcnpack", None),
    # The original embeds the reference frame with tAtt_2 and every frame with tAtt_1.
    ("fusion.ref_embed", "tsa_fusion.tAtt_2", None),
    ("fusion.nbr_embed", "tsa_fusion.tAtt_1", None),
    ("fusion.feat_fusion", "tsa_fusion.fea_fusion", None),
    ("fusion.spatial_l{j}", "tsa_fusion.sAtt_L{j}", None),
    ("fusion.spatial_add{j}", "tsa_fusion.sAtt_add_{j}", None),
    ("fusion.spatial{j}", "tsa_fusion.sAtt_{j}", None),
    ("fusion", "tsa_fusion", None),  # without TSA: the plain 1x1 fusion conv
    ("reconstruction", "recon_trunk", None),
    ("upsample.0", "upconv1", None),
    ("upsample.1", "upconv2", None),
    ("conv_hr", "HRconv", None),
    ("conv_last", "conv_last", None),
]

_BASICSR: list[_Pair] = [
    ("predeblur.conv_first", "predeblur.conv_first", None),
    ("predeblur.down_hr1", "predeblur.stride_conv_hr1", None),
    ("predeblur.down_hr2", "predeblur.stride_conv_hr2", None),
    ("predeblur.down_l2", "predeblur.stride_conv_l2", None),
    ("predeblur.down_l3", "predeblur.stride_conv_l3", None),
    ("predeblur.res_l3", "predeblur.resblock_l3", None),
    ("predeblur.res_l2_1", "predeblur.resblock_l2_1", None),
    ("predeblur.res_l2_2", "predeblur.resblock_l2_2", None),
    ("predeblur.res_l1", "predeblur.resblock_l1", None),
    ("conv_first", "conv_first", False),  # BasicSR has no hr_in path without pre-deblur
    ("conv_1x1", "conv_1x1", None),
    ("feature_extraction", "feature_extraction", None),
    ("conv_l2_1", "conv_l2_1", None),
    ("conv_l2_2", "conv_l2_2", None),
    ("conv_l3_1", "conv_l3_1", None),
    ("conv_l3_2", "conv_l3_2", None),
    ("pcd.l{l}.offset_conv{j}", "pcd_align.offset_conv{j}.l{l}", None),
    ("pcd.l{l}.dcn", "pcd_align.dcn_pack.l{l}", None),
    ("pcd.l{l}.feat_conv", "pcd_align.feat_conv.l{l}", None),
    ("pcd.cascade.offset_conv{j}", "pcd_align.cas_offset_conv{j}", None),
    ("pcd.cascade.dcn", "pcd_align.cas_dcnpack", None),
    # BasicSR embeds the reference frame with temporal_attn1 (the original's tAtt_2).
    ("fusion.ref_embed", "fusion.temporal_attn1", None),
    ("fusion.nbr_embed", "fusion.temporal_attn2", None),
    ("fusion.feat_fusion", "fusion.feat_fusion", None),
    ("fusion.spatial_l{j}", "fusion.spatial_attn_l{j}", None),
    ("fusion.spatial_add{j}", "fusion.spatial_attn_add{j}", None),
    ("fusion.spatial{j}", "fusion.spatial_attn{j}", None),
    ("fusion", "fusion", None),
    ("reconstruction", "reconstruction", None),
    ("upsample.0", "upconv1", None),
    ("upsample.1", "upconv2", None),
    ("conv_hr", "conv_hr", None),
    ("conv_last", "conv_last", None),
]

# mmagic's EDVRNet (mmagic/models/editors/edvr/edvr_net.py; mmediting before it): x4 SR only, no
# pre-deblur, no HR input. Its convs followed by an activation are mmcv ConvModules, which keep the conv
# under `.conv`; the DCN packs are mmcv ModulatedDeformConv2d (`weight`, `bias`) with a `conv_offset`
# predicting (o1, o2, mask) chunks exactly as ours; PixelShufflePack keeps its conv as `upsample_conv`.
_MMAGIC: list[_Pair] = [
    ("conv_first", "conv_first", False),
    ("feature_extraction", "feature_extraction", None),
    ("conv_l2_1", "feat_l2_conv1.conv", None),
    ("conv_l2_2", "feat_l2_conv2.conv", None),
    ("conv_l3_1", "feat_l3_conv1.conv", None),
    ("conv_l3_2", "feat_l3_conv2.conv", None),
    ("pcd.l{l}.offset_conv{j}", "pcd_alignment.offset_conv{j}.l{l}.conv", None),
    ("pcd.l{l}.dcn", "pcd_alignment.dcn_pack.l{l}", None),
    ("pcd.l{l}.feat_conv", "pcd_alignment.feat_conv.l{l}.conv", None),
    ("pcd.cascade.offset_conv{j}", "pcd_alignment.cas_offset_conv{j}.conv", None),
    ("pcd.cascade.dcn", "pcd_alignment.cas_dcnpack", None),
    # As BasicSR: temporal_attn1 embeds the reference frame, temporal_attn2 every frame.
    ("fusion.ref_embed", "fusion.temporal_attn1", None),
    ("fusion.nbr_embed", "fusion.temporal_attn2", None),
    ("fusion.feat_fusion", "fusion.feat_fusion.conv", None),
    ("fusion.spatial_l{j}", "fusion.spatial_attn_l{j}.conv", None),
    ("fusion.spatial_add1", "fusion.spatial_attn_add1.conv", None),
    ("fusion.spatial_add2", "fusion.spatial_attn_add2", None),  # a plain Conv2d (no activation)
    ("fusion.spatial5", "fusion.spatial_attn5", None),  # a plain Conv2d (no activation)
    ("fusion.spatial{j}", "fusion.spatial_attn{j}.conv", None),
    ("fusion", "fusion", None),  # without TSA: the plain 1x1 fusion conv
    ("reconstruction", "reconstruction", None),
    ("upsample.0", "upsample1.upsample_conv", None),
    ("upsample.1", "upsample2.upsample_conv", None),
    ("conv_hr", "conv_hr", None),
    ("conv_last", "conv_last", None),
]

_TABLES = {ORIGINAL: _ORIGINAL, BASICSR: _BASICSR, MMAGIC: _MMAGIC}
_PLACEHOLDER = re.compile(r"\{(\w)(\+1)?\}")


@cache
def _compile(template: str) -> tuple[re.Pattern[str], Callable[[dict[str, int]], str]]:
    """A regex matching `template` as a key prefix up to a dot, and a formatter for the other side."""
    parts, pos, pattern = [], 0, ""
    for m in _PLACEHOLDER.finditer(template):
        pattern += re.escape(template[pos:m.start()]) + rf"(?P<{m.group(1)}>\d+)"
        parts.append((template[pos:m.start()], m.group(1), bool(m.group(2))))
        pos = m.end()
    pattern += re.escape(template[pos:]) + r"(?=\.)"
    tail = template[pos:]

    def fmt(values: dict[str, int]) -> str:
        return "".join(f"{text}{values[name] + (1 if plus else 0)}" for text, name, plus in parts) + tail

    return re.compile(pattern), fmt


def _read(template: str, m: re.Match[str]) -> dict[str, int]:
    """Numbers captured from a match of `template`, undoing a {x+1} shift."""
    plus = {name for name, p in _PLACEHOLDER.findall(template) if p}
    return {k: int(v) - (1 if k in plus else 0) for k, v in m.groupdict().items()}


def _translate(key: str, pairs: list[_Pair], to_ours: bool, hr_in: bool | None) -> str | None:
    for ours, theirs, cond in pairs:
        if not to_ours and cond is not None and cond != hr_in:
            continue
        src, dst = (theirs, ours) if to_ours else (ours, theirs)
        regex, _ = _compile(src)
        m = regex.match(key)
        if m is None:
            continue
        values = _read(src, m)
        if min(values.values(), default=0) < 0:
            continue
        return _compile(dst)[1](values) + key[m.end():]
    return None


def to_ours(key: str, layout: str) -> str | None:
    """Our name for a key of `layout` (None where the layout has no such key)."""
    return key if layout == OURS else _translate(key, _TABLES[layout], True, None)


def from_ours(key: str, layout: str, params: EDVRParams) -> str | None:
    """The name `layout` gives our key, for a model with `params` (None: the layout has no equivalent)."""
    return key if layout == OURS else _translate(key, _TABLES[layout], False, params.hr_in)


# mmagic keeps the network of a restorer under `generator.` (an EMA copy, where kept, under
# `generator_ema.`); its data preprocessor's normalisation buffers sit beside it and are not weights.
_MMAGIC_MODELS = ("generator_ema.", "generator.")
_MMAGIC_AUX = ("data_preprocessor.",)


def strip_prefixes(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop `module.` (DataParallel / DDP) and `_orig_mod.` (torch.compile) prefixes; of an mmagic
    restorer's state dict keep the network (`generator_ema.`, else `generator.`) without its prefix."""
    for prefix in _MMAGIC_MODELS:
        if any(k.startswith(prefix) for k in sd):
            sd = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()
                  if k.startswith(prefix) or not k.startswith(_MMAGIC_MODELS + _MMAGIC_AUX)}
            break
    out = {}
    for k, v in sd.items():
        while k.startswith(("module.", "_orig_mod.")):
            k = k.split(".", 1)[1]
        out[k] = v
    return out


def detect_layout(sd: Mapping[str, Tensor]) -> str | None:
    """Which naming a (prefix-stripped) EDVR state dict uses; None when it is not an EDVR state dict."""
    keys = list(sd)
    if any(k.startswith("pcd.l1.") for k in keys):
        return OURS
    if any(k.startswith(("pcd_align.L1_", "pcd_align.cas_dcnpack.conv_offset_mask")) for k in keys):
        return ORIGINAL
    if any(k.startswith(("pcd_align.dcn_pack.", "pcd_align.offset_conv1.l")) for k in keys):
        return BASICSR
    if any(k.startswith(("pcd_alignment.dcn_pack.", "pcd_alignment.offset_conv1.l")) for k in keys):
        return MMAGIC
    return None


def _count(sd: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return len({m.group(1) for k in sd if (m := pattern.match(k))})


def infer_params(sd: Mapping[str, Tensor], where: str = "state dict") -> EDVRParams:
    """The architecture of a state dict in our naming, from its keys and shapes.

    center_frame_idx cannot be seen in weights: the middle frame is assumed.
    """
    def need(key: str) -> Tensor:
        if key not in sd:
            raise CheckpointError(f"cannot infer the EDVR architecture: key {key!r} is missing",
                                  path=where, hint="pass preset= to load_pretrained")
        return sd[key]

    nf = int(need("conv_l2_1.weight").shape[0])
    with_predeblur = any(k.startswith("predeblur.") for k in sd)
    hr_in = "predeblur.down_hr1.weight" in sd or "down_hr1.weight" in sd
    with_tsa = "fusion.ref_embed.weight" in sd
    fusion_w = need("fusion.feat_fusion.weight" if with_tsa else "fusion.weight")
    groups = int(need("pcd.l1.dcn.conv_offset.weight").shape[0]) // 27
    n_up = _count(sd, "upsample")
    factor = 2 ** n_up // (4 if hr_in else 1)
    if factor not in (1, 2, 4):
        raise CheckpointError(f"{n_up} upsampling stages with hr_in={hr_in} is not a scale of 1, 2 or 4",
                              path=where)
    try:
        return EDVRParams(num_feat=nf, num_frame=int(fusion_w.shape[1]) // nf, deformable_groups=groups,
                          num_extract_block=_count(sd, "feature_extraction"),
                          num_reconstruct_block=_count(sd, "reconstruction"), hr_in=hr_in,
                          with_predeblur=with_predeblur, with_tsa=with_tsa, scale=factor)
    except Exception as exc:  # a malformed file yields parameters out of range
        raise CheckpointError(f"inferred an invalid EDVR architecture: {exc}", path=where,
                              hint="pass preset= to load_pretrained") from exc
