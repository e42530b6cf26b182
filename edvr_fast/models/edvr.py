"""The EDVR network: extraction, feature pyramid, batched PCD alignment, fusion, reconstruction,
pixel-shuffle upsampling and the global residual; pads any frame size internally and crops back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edvr_fast.errors import InputError
from edvr_fast.models.blocks import AlignDCN, Predeblur, ResBlock, conv3, lrelu
from edvr_fast.models.params import HR_FEAT, EDVRParams
from edvr_fast.models.pcd import PCDAlignment
from edvr_fast.models.tsa import TSAFusion


class EDVR(nn.Module):
    """EDVR video restoration network.

    forward(x): x [B, T, 3, H, W] float RGB (T = params.num_frame, any H and W) returns the
    restored reference frame [B, 3, H * scale, W * scale]. With hr_in the input is full resolution
    and features run at 1/4; the output is still `scale` times the input.
    """

    def __init__(self, params: EDVRParams | None = None):
        super().__init__()
        p = EDVRParams() if params is None else params
        p.validate()
        self.params = p
        nf = p.num_feat

        if p.with_predeblur:
            self.predeblur = Predeblur(nf, p.hr_in)
            self.conv_1x1 = nn.Conv2d(nf, nf, 1)
        else:
            self.conv_first = conv3(3, nf)
            if p.hr_in:
                self.down_hr1 = conv3(nf, nf, 2)
                self.down_hr2 = conv3(nf, nf, 2)
        self.feature_extraction = nn.Sequential(*(ResBlock(nf) for _ in range(p.num_extract_block)))
        self.conv_l2_1 = conv3(nf, nf, 2)
        self.conv_l2_2 = conv3(nf, nf)
        self.conv_l3_1 = conv3(nf, nf, 2)
        self.conv_l3_2 = conv3(nf, nf)

        self.pcd = PCDAlignment(nf, p.deformable_groups, p.max_offset)
        if p.with_tsa:
            self.fusion: nn.Module = TSAFusion(nf, p.num_frame, p.center)
        else:
            self.fusion = nn.Conv2d(p.num_frame * nf, nf, 1)

        self.reconstruction = nn.Sequential(*(ResBlock(nf) for _ in range(p.num_reconstruct_block)))
        # Every stage but the last keeps num_feat channels; the last one outputs HR_FEAT (as published).
        n_up = p.num_upsample
        self.upsample = nn.ModuleList(
            conv3(nf, (HR_FEAT if i == n_up - 1 else nf) * 4) for i in range(n_up)
        )
        self.conv_hr = conv3(HR_FEAT if n_up else nf, HR_FEAT)
        self.conv_last = conv3(HR_FEAT, 3)

    # ----------------------------------------------------------------------------------------- forward
    def _features_l1(self, frames: Tensor) -> Tensor:
        p = self.params
        if p.with_predeblur:
            feat = self.conv_1x1(self.predeblur(frames))
        else:
            feat = lrelu(self.conv_first(frames))
            if p.hr_in:
                feat = lrelu(self.down_hr2(lrelu(self.down_hr1(feat))))
        return self.feature_extraction(feat)

    def _check_input(self, x: Tensor) -> None:
        self.check_input_shape(tuple(x.shape))

    def check_input_shape(self, shape: tuple[int, ...]) -> None:
        """Raises InputError unless `forward` accepts an input of this shape ([B, T, 3, H, W])."""
        p = self.params
        if len(shape) != 5 or shape[1] != p.num_frame or shape[2] != 3:
            raise InputError(f"EDVR input must be [B, {p.num_frame}, 3, H, W] (num_frame={p.num_frame}, "
                             f"RGB), got shape {tuple(shape)}")
        if p.pad_mode == "reflect":
            h, w = shape[-2:]
            ph, pw = (-h) % p.pad_multiple, (-w) % p.pad_multiple
            if ph >= h or pw >= w:
                raise InputError(f"frames of {h}x{w} are too small for reflect padding to a multiple of "
                                 f"{p.pad_multiple}; use pad_mode='replicate'")

    def pad_frames(self, frames: Tensor) -> Tensor:
        """[N, 3, h, w] -> [N, 3, H, W] padded (params.pad_mode) up to multiples of params.pad_multiple."""
        p = self.params
        h, w = frames.shape[-2:]
        ph, pw = (-h) % p.pad_multiple, (-w) % p.pad_multiple
        return F.pad(frames, (0, pw, 0, ph), mode=p.pad_mode) if ph or pw else frames

    def frame_features(self, frames: Tensor) -> list[Tensor]:
        """Per-frame part: padded frames [N, 3, H, W] (from `pad_frames`) -> feature pyramid [L1, L2, L3].

        Nothing here depends on the window a frame is in, so a restorer computes it once per frame.
        """
        l1 = self._features_l1(frames)
        l2 = lrelu(self.conv_l2_2(lrelu(self.conv_l2_1(l1))))
        l3 = lrelu(self.conv_l3_2(lrelu(self.conv_l3_1(l2))))
        return [l1, l2, l3]

    def window_forward(self, feats: list[Tensor], center: Tensor, size: tuple[int, int]) -> Tensor:
        """Per-window part: alignment, fusion, reconstruction, upsampling and the global residual.

        feats: [L1, L2, L3] of `frame_features`, each [B * T, C, h, w] in window order (frame t of
        window b at b * T + t); center: the padded reference frames [B, 3, H, W]; size: the unpadded
        (h, w) the output is cropped to. Returns [B, 3, h * scale, w * scale].
        """
        p = self.params
        t = p.num_frame
        n = feats[0].shape[0]
        if n % t or center.shape[0] * t != n:
            raise InputError(f"window_forward needs {t} frames per window: {n} feature maps for "
                             f"{center.shape[0]} reference frames")
        b = n // t
        # Batched PCD: every frame (the reference included) is aligned in one call per level,
        # against the reference repeated T times.
        ref = []
        for feat in feats:
            _, cf, fh, fw = feat.shape
            ref_feat = feat.reshape(b, t, cf, fh, fw)[:, p.center]
            ref.append(ref_feat.unsqueeze(1).expand(b, t, cf, fh, fw).reshape(n, cf, fh, fw))
        aligned = self.pcd(list(feats), ref)
        _, cf, fh, fw = aligned.shape
        if p.with_tsa:
            feat = self.fusion(aligned.reshape(b, t, cf, fh, fw))
        else:
            feat = self.fusion(aligned.reshape(b, t * cf, fh, fw))

        out = self.reconstruction(feat)
        for conv in self.upsample:
            out = lrelu(F.pixel_shuffle(conv(out), 2))
        out = self.conv_last(lrelu(self.conv_hr(out)))
        if p.scale == 1:
            base = center
        else:
            base = F.interpolate(center, scale_factor=p.scale, mode="bilinear", align_corners=False)
        out = out + base
        h, w = size
        if (h, w) != tuple(center.shape[-2:]):
            out = out[..., : h * p.scale, : w * p.scale]
        return out

    def forward(self, x: Tensor) -> Tensor:
        """The whole model: `window_forward(frame_features(pad_frames(frames)), ...)` of every window."""
        self._check_input(x)
        p = self.params
        b, t, c, h, w = x.shape
        frames = self.pad_frames(x.reshape(b * t, c, h, w))
        center = frames.reshape(b, t, c, *frames.shape[-2:])[:, p.center]
        return self.window_forward(self.frame_features(frames), center, (h, w))

    # ------------------------------------------------------------------------------ training helpers
    def dcn_modules(self) -> dict[str, AlignDCN]:
        """Every deformable conv of the model by qualified name (PCD levels and cascade)."""
        return {name: m for name, m in self.named_modules() if isinstance(m, AlignDCN)}

    def dcn_parameters(self) -> list[nn.Parameter]:
        """Parameters of the DCN packs (weights, biases and their offset/mask convs)."""
        return [prm for m in self.dcn_modules().values() for prm in m.parameters()]

    def non_dcn_parameters(self) -> list[nn.Parameter]:
        """Every parameter not in `dcn_parameters()`."""
        dcn = {id(prm) for prm in self.dcn_parameters()}
        return [prm for prm in self.parameters() if id(prm) not in dcn]

    def fusion_parameters(self) -> list[nn.Parameter]:
        """Parameters of the fusion module (TSA, or the 1x1 fusion conv); TSA warm-up trains only these."""
        return list(self.fusion.parameters())

    def track_offset_stats(self, enabled: bool = True) -> None:
        """Turn the per-DCN offset statistics on or off (on by default; off saves a reduction per DCN)."""
        for m in self.dcn_modules().values():
            m.track_stats = enabled

    def offset_stats(self, per_dcn: bool = False) -> Tensor:
        """Mean and max |offset| since the last call, on the model's device; resets the accumulators.

        Returns [2] = (mean over DCN calls of mean |offset|, max |offset|), or with per_dcn=True
        [num_dcn, 2] in the order of `dcn_modules()`. Zeros when no forward ran since the last read.
        Reading the values (e.g. `.tolist()`) is the only host sync.
        """
        stats = torch.stack([m.read_offset_stats() for m in self.dcn_modules().values()])  # [n, 3]
        if per_dcn:
            return torch.stack([stats[:, 0] / stats[:, 2].clamp(min=1), stats[:, 1]], dim=1)
        mean = stats[:, 0].sum() / stats[:, 2].sum().clamp(min=1)
        return torch.stack([mean, stats[:, 1].amax()])
