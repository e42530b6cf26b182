"""`python -m edvr_fast.evaluate`: PSNR/SSIM (and tOF, temporal consistency) of restored clips against ground
truth, per frame, per clip, overall.

Owns pairing prediction and GT clips, the score board shared with `infer --gt`, and the table/CSV/JSON reports.

Overall numbers are the mean over clips of each clip's mean over frames, as video-restoration papers report
(e.g. REDS4); the frame-weighted mean is in the JSON too. Metrics follow `edvr_fast.metrics`. tOF has one
value per frame after a clip's first (flow needs a previous frame); a clip's tOF is their mean.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from edvr_fast.data.frames import VIDEO_EXTS, list_frames, probe_video, read_clip_frames
from edvr_fast.data.scan import ScanResult, scan_frames
from edvr_fast.errors import DatasetError, EdvrError
from edvr_fast.inference.engine import frame_to_tensor
from edvr_fast.metrics import psnr, ssim, tof_gray


@dataclass
class ClipPair:
    """A prediction clip and its GT: folders of frames or video files, with the frame names to report."""

    name: str
    pred: Path
    gt: Path
    frame_names: list[str]


@dataclass
class ClipScores:
    name: str
    frames: list[str]
    psnr: list[float]
    ssim: list[float]
    tof: list[float | None] = field(default_factory=list)  # None for the first frame (and when off)

    @property
    def mean_psnr(self) -> float:
        return sum(self.psnr) / len(self.psnr)

    @property
    def mean_tof(self) -> float | None:
        vals = [t for t in self.tof if t is not None]
        return sum(vals) / len(vals) if vals else None

    @property
    def mean_ssim(self) -> float:
        return sum(self.ssim) / len(self.ssim)


@dataclass
class ScoreBoard:
    """Collects per-frame PSNR/SSIM as device tensors (no host sync per frame); `clips()` reads them once.
    With `tof`, each frame's tOF against the clip's previous frame is computed on the host (OpenCV flow)."""

    crop_border: int = 0
    y_channel: bool = False
    tof: bool = False
    _pending: dict[str, tuple[list[str], list[torch.Tensor], list[torch.Tensor]]] = field(default_factory=dict)
    _tof: dict[str, list[float | None]] = field(default_factory=dict)
    _prev: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def add(self, clip: str, frame: str, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Score one frame: pred and gt float [3, H, W] RGB in [0, 1] on the same device."""
        if pred.shape != gt.shape:
            raise DatasetError(
                f"clip '{clip}' frame '{frame}': prediction is {pred.shape[-1]}x{pred.shape[-2]} but GT is "
                f"{gt.shape[-1]}x{gt.shape[-2]}",
                hint="GT must have the restored size (input size x the model's scale)",
            )
        names, ps, ss = self._pending.setdefault(clip, ([], [], []))
        kw = dict(crop_border=self.crop_border, y_channel=self.y_channel)
        names.append(frame)
        ps.append(psnr(pred, gt, **kw))
        ss.append(ssim(pred, gt, **kw))
        if self.tof:
            cur = (_gray(pred), _gray(gt))
            prev = self._prev.get(clip)
            self._tof.setdefault(clip, []).append(None if prev is None else tof_gray(prev[0], cur[0], prev[1], cur[1]))
            self._prev[clip] = cur

    def clips(self) -> list[ClipScores]:
        out = []
        for name, (frames, ps, ss) in self._pending.items():
            out.append(ClipScores(name, frames, torch.stack(ps).tolist(), torch.stack(ss).tolist(),
                                  self._tof.get(name, [None] * len(frames))))
        return out

    def overall(self) -> dict[str, float]:
        clips = self.clips()
        if not clips:
            return {}
        n = sum(len(c.frames) for c in clips)
        tofs = [c.mean_tof for c in clips if c.mean_tof is not None]
        return {
            "tof": sum(tofs) / len(tofs) if tofs else None,
            "psnr": sum(c.mean_psnr for c in clips) / len(clips),
            "ssim": sum(c.mean_ssim for c in clips) / len(clips),
            "psnr_frame_weighted": sum(sum(c.psnr) for c in clips) / n,
            "ssim_frame_weighted": sum(sum(c.ssim) for c in clips) / n,
            "clips": len(clips),
            "frames": n,
        }

    def settings(self) -> str:
        return f"{'Y (BT.601)' if self.y_channel else 'RGB'}, crop border {self.crop_border}"

    def table(self, per_frame: bool = False) -> str:
        clips = self.clips()
        width = max([len("overall")] + [len(c.name) for c in clips] + ([len(f) + 2 for c in clips for f in c.frames]
                                                                         if per_frame else []))
        t = self.tof
        lines = [f"PSNR/SSIM on {self.settings()}" + ("; tOF: TecoGAN, Farneback flow, lower is better" if t else ""),
                 f"{'clip':<{width}}  {'frames':>6}  {'PSNR dB':>8}  {'SSIM':>7}" + (f"  {'tOF':>7}" if t else "")]
        for c in clips:
            if per_frame:
                for f, p, s, v in zip(c.frames, c.psnr, c.ssim, c.tof, strict=True):
                    lines.append(f"  {f:<{width - 2}}  {'':>6}  {p:8.3f}  {s:7.4f}" + (f"  {_fmt(v)}" if t else ""))
            lines.append(f"{c.name:<{width}}  {len(c.frames):>6}  {c.mean_psnr:8.3f}  {c.mean_ssim:7.4f}"
                         + (f"  {_fmt(c.mean_tof)}" if t else ""))
        o = self.overall()
        if o:
            lines.append(f"{'overall':<{width}}  {o['frames']:>6}  {o['psnr']:8.3f}  {o['ssim']:7.4f}"
                         + (f"  {_fmt(o['tof'])}" if t else ""))
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike) -> None:
        """Rows clip, frame, psnr, ssim[, tof]: every frame, then a 'mean' row per clip, then 'overall'
        (tof is empty for a clip's first frame)."""
        t = self.tof
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["clip", "frame", "psnr", "ssim"] + (["tof"] if t else []))
            for c in self.clips():
                for f, p, s, v in zip(c.frames, c.psnr, c.ssim, c.tof, strict=True):
                    w.writerow([c.name, f, f"{p:.6f}", f"{s:.6f}"] + ([_num(v)] if t else []))
                w.writerow([c.name, "mean", f"{c.mean_psnr:.6f}", f"{c.mean_ssim:.6f}"]
                           + ([_num(c.mean_tof)] if t else []))
            o = self.overall()
            w.writerow(["overall", "mean", f"{o['psnr']:.6f}", f"{o['ssim']:.6f}"] + ([_num(o["tof"])] if t else []))

    def write_json(self, path: str | os.PathLike) -> None:
        doc = {
            "crop_border": self.crop_border,
            "y_channel": self.y_channel,
            "overall": self.overall(),
            "clips": {
                c.name: {
                    "psnr": c.mean_psnr,
                    "ssim": c.mean_ssim,
                    "tof": c.mean_tof,
                    "frames": [{"frame": f, "psnr": p, "ssim": s, "tof": v}
                               for f, p, s, v in zip(c.frames, c.psnr, c.ssim, c.tof, strict=True)],
                }
                for c in self.clips()
            },
        }
        Path(path).write_text(json.dumps(doc, indent=2))


def _gray(img: torch.Tensor) -> np.ndarray:
    """float [3, H, W] RGB in [0, 1] -> uint8 gray (cv2's RGB2GRAY, as TecoGAN's tOF uses)."""
    u8 = img.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(u8), cv2.COLOR_RGB2GRAY)


def _fmt(v: float | None) -> str:
    return f"{v:7.4f}" if v is not None else f"{'-':>7}"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"


def _scan(root: Path, what: str) -> ScanResult:
    if not root.exists():
        raise DatasetError(f"{what} does not exist", root, "check the path")
    return scan_frames(root)


def _single_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTS


def _video_pair(name: str, pred: Path, gt: Path) -> ClipPair:
    """A pair where either side is a video file (the other a video or a folder of frames)."""
    if _single_video(pred):
        return ClipPair(name, pred, gt, [f"{i:06d}" for i in range(probe_video(pred)[0])])
    if not pred.is_dir():
        raise DatasetError("prediction does not exist", pred, "pass a folder of frames or a video file")
    frames, _ = list_frames(pred)
    return ClipPair(name, pred, gt, [f.stem for f in frames])


def pair_clips(pred: str | os.PathLike, gt: str | os.PathLike) -> list[ClipPair]:
    """Match prediction and GT clips: two folders of frames, two video files, or two trees of clips with
    the same clip names (relative paths; a video matches a folder of the same name)."""
    pred, gt = Path(pred), Path(gt)
    if _single_video(pred) or _single_video(gt):
        return [_video_pair(pred.stem, pred, gt)]
    ps, gs = _scan(pred, "prediction"), _scan(gt, "GT")
    single = len(ps.clips) == 1 and ps.clips[0].lq.path == pred and len(gs.clips) == 1 and gs.clips[0].lq.path == gt
    if single:  # two folders of frames: pair them whatever their names
        p = ps.clips[0]
        return [ClipPair(p.name, pred, gt, [f.stem for f in p.lq_frames] or [f"{i:06d}" for i in range(p.num_frames)])]
    by_name = {c.name: c for c in gs.clips}
    pairs = []
    for c in ps.clips:
        if c.name not in by_name:
            raise DatasetError(f"prediction clip '{c.name}' has no GT clip of that name", c.lq.path,
                               f"put its GT under {gt}/{c.name}")
        g = by_name[c.name]
        if g.num_frames != c.num_frames:
            raise DatasetError(f"clip '{c.name}' has {c.num_frames} predicted frames but {g.num_frames} GT frames",
                               c.lq.path, "prediction and GT must hold the same frames")
        names = [f.stem for f in c.lq_frames] or [f"{i:06d}" for i in range(c.num_frames)]
        pairs.append(ClipPair(c.name, c.lq.path, g.lq.path, names))
    return pairs


def evaluate(pred: str | os.PathLike, gt: str | os.PathLike, *, crop_border: int = 0, y_channel: bool = False,
             device: str = "cpu", progress: bool = True, tof: bool = True) -> ScoreBoard:
    """Score every predicted frame against its GT frame (read as 8-bit, as they are stored)."""
    board = ScoreBoard(crop_border, y_channel, tof)
    dev = torch.device(device)
    pairs = pair_clips(pred, gt)
    bar = tqdm(total=sum(len(p.frame_names) for p in pairs), unit="frame", disable=not progress)
    for pair in pairs:
        frames = zip(read_clip_frames(pair.pred), read_clip_frames(pair.gt), strict=False)
        count = 0
        for name, (p, g) in zip(pair.frame_names, frames, strict=False):
            board.add(pair.name, name, frame_to_tensor(p, dev), frame_to_tensor(g, dev))
            count += 1
            bar.update(1)
        if count != len(pair.frame_names):
            raise DatasetError(f"clip '{pair.name}': only {count} of {len(pair.frame_names)} frames could be paired",
                               pair.gt, "prediction and GT must hold the same number of frames")
    bar.close()
    return board


def add_metric_args(parser: argparse.ArgumentParser) -> None:
    """Options shared with `infer --gt`."""
    parser.add_argument("--crop-border", type=int, default=0, help="pixels cropped on every side (SR: the scale)")
    parser.add_argument("--y-channel", action="store_true", help="measure BT.601 luma (Y) instead of RGB")
    parser.add_argument("--per-frame", action="store_true", help="list every frame in the table")
    parser.add_argument("--csv", metavar="FILE", help="write per-frame, per-clip and overall scores as CSV")
    parser.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    parser.add_argument("--no-tof", action="store_true",
                        help="skip tOF (temporal consistency: optical flow of consecutive frames, TecoGAN)")


def report(board: ScoreBoard, args: argparse.Namespace) -> None:
    """Print the table and write the CSV/JSON files asked for."""
    print(board.table(per_frame=args.per_frame))
    if args.csv:
        board.write_csv(args.csv)
    if args.json:
        board.write_json(args.json)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edvr_fast.evaluate",
        description="PSNR, SSIM and tOF of restored frames against ground truth (folders of frames, videos, clip "
        "trees; a video on either side).",
        epilog="SSIM: 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03 on the 0-255 scale. Y channel: "
        "16 + 65.481 R + 128.553 G + 24.966 B (MATLAB rgb2ycbcr). Overall = mean of the clip means.",
    )
    parser.add_argument("--pred", required=True, help="restored frames: folder, video file or tree of clips")
    parser.add_argument("--gt", required=True, help="ground truth with the same layout and clip names")
    parser.add_argument("--device", default="cpu", help="where the metrics run (cpu, cuda)")
    parser.add_argument("--no-progress", action="store_true")
    add_metric_args(parser)
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        if args.crop_border < 0:
            raise DatasetError(f"--crop-border must be >= 0, got {args.crop_border}")
        board = evaluate(args.pred, args.gt, crop_border=args.crop_border, y_channel=args.y_channel,
                         device=args.device, progress=not args.no_progress, tof=not args.no_tof)
        report(board, args)
    except EdvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    o = board.overall()
    tof = f", tOF {o['tof']:.4f}" if o.get("tof") is not None else ""
    print(f"evaluated {o['frames']} frames in {o['clips']} clips in {time.monotonic() - t0:.1f}s: "
          f"PSNR {o['psnr']:.3f} dB, SSIM {o['ssim']:.4f}{tof} ({board.settings()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
