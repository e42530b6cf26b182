"""Validation during training: PSNR / SSIM of the restored centre frames (RGB or Y, border crop), the identity
baseline (input frame resized to the GT size) and sample images; frames are shared out across ranks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edvr_fast.data.dataset import ClipDataset
from edvr_fast.metrics import psnr, ssim
from edvr_fast.train import distributed
from edvr_fast.train.distributed import DistInfo
from edvr_fast.train.sheets import sample_sheet, write_png


def identity(lq_center: Tensor, gt_hw: tuple[int, int]) -> Tensor:
    """The baseline restoration: the input frame itself, bicubically resized to the GT size for SR."""
    if tuple(lq_center.shape[-2:]) == tuple(gt_hw):
        return lq_center
    return F.interpolate(lq_center, size=gt_hw, mode="bicubic", align_corners=False).clamp(0, 1)


def _to_bgr8(x: Tensor) -> np.ndarray:
    return (x.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy())[..., ::-1]


@torch.no_grad()
def evaluate(model: nn.Module, ds: ClipDataset, indices: list[int], info: DistInfo, *, crop_border: int,
             y_channel: bool, autocast: bool, center: int, samples_dir: Path | None = None,
             save_samples: int = 0) -> dict[str, float]:
    """Mean PSNR / SSIM over this rank's `indices`, summed across ranks; saves labelled, enlarged
    [input | output | GT] sheets with the PSNR of input and output (validation only: it reads values)."""
    was_training = model.training
    model.eval()
    dev = info.device
    sums = torch.zeros(5, dtype=torch.float64, device=dev)  # psnr, ssim, identity psnr, identity ssim, count
    # The sheets are spread evenly over the frames (so over every validation clip), not the first few.
    n_save = min(save_samples, len(indices)) if samples_dir is not None else 0
    to_save = {indices[j] for j in np.linspace(0, len(indices) - 1, n_save).round().astype(int)} if n_save else set()
    for i in indices:
        item = ds[i]
        lq, gt = item["lq"].unsqueeze(0).to(dev), item["gt"].unsqueeze(0).to(dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(lq)
        out = out.float().clamp(0, 1)
        base = identity(lq[:, center], tuple(gt.shape[-2:]))
        p_out = psnr(out, gt, crop_border=crop_border, y_channel=y_channel)
        p_in = psnr(base, gt, crop_border=crop_border, y_channel=y_channel)
        sums[0] += p_out.sum()
        sums[1] += ssim(out, gt, crop_border=crop_border, y_channel=y_channel).sum()
        sums[2] += p_in.sum()
        sums[3] += ssim(base, gt, crop_border=crop_border, y_channel=y_channel).sum()
        sums[4] += 1
        if i in to_save:
            samples_dir.mkdir(parents=True, exist_ok=True)
            name = item["key"].replace("/", "_")
            what = "input" if lq.shape[-2:] == gt.shape[-2:] else "input, bicubic"
            labels = [f"{what} {float(p_in[0]):.2f} dB", f"output {float(p_out[0]):.2f} dB", "GT"]
            sheet = sample_sheet([_to_bgr8(base[0]), _to_bgr8(out[0]), _to_bgr8(gt[0])], labels)
            write_png(samples_dir / f"{name}.png", sheet)
    distributed.all_reduce(sums, info)
    if was_training:
        model.train()
    s = sums.tolist()
    n = max(s[4], 1.0)
    return {"psnr": s[0] / n, "ssim": s[1] / n, "identity_psnr": s[2] / n, "identity_ssim": s[3] / n,
            "frames": int(s[4])}
