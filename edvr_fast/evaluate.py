"""`python -m edvr_fast.evaluate`: PSNR/SSIM of restored clips against ground truth, per frame, per clip, overall.

Owns pairing prediction and GT clips, the score board shared with `infer --gt`, and the table/CSV/JSON reports.

Overall numbers are the mean over clips of each clip's mean over frames, as video-restoration papers report
(e.g. REDS4); the frame-weighted mean is in the JSON too. Metrics follow `edvr_fast.metrics`.
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

import torch
from tqdm import tqdm

from edvr_fast.data.frames import VIDEO_EXTS, probe_video, read_clip_frames
from edvr_fast.data.scan import ScanResult, scan_frames
from edvr_fast.errors import DatasetError, EdvrError
from edvr_fast.inference.engine import frame_to_tensor
from edvr_fast.metrics import psnr, ssim


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

    @property
    def mean_psnr(self) -> float:
        return sum(self.psnr) / len(self.psnr)

    @property
    def mean_ssim(self) -> float:
        return sum(self.ssim) / len(self.ssim)


@dataclass
class ScoreBoard:
    """Collects per-frame PSNR/SSIM as device tensors (no host sync per frame); `clips()` reads them once."""

    crop_border: int = 0
    y_channel: bool = False
    _pending: dict[str, tuple[list[str], list[torch.Tensor], list[torch.Tensor]]] = field(default_factory=dict)

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

    def clips(self) -> list[ClipScores]:
        out = []
        for name, (frames, ps, ss) in self._pending.items():
            out.append(ClipScores(name, frames, torch.stack(ps).tolist(), torch.stack(ss).tolist()))
        return out

    def overall(self) -> dict[str, float]:
        clips = self.clips()
        if not clips:
            return {}
        n = sum(len(c.frames) for c in clips)
        return {
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
        lines = [f"PSNR/SSIM on {self.settings()}", f"{'clip':<{width}}  {'frames':>6}  {'PSNR dB':>8}  {'SSIM':>7}"]
        for c in clips:
            if per_frame:
                for f, p, s in zip(c.frames, c.psnr, c.ssim, strict=True):
                    lines.append(f"  {f:<{width - 2}}  {'':>6}  {p:8.3f}  {s:7.4f}")
            lines.append(f"{c.name:<{width}}  {len(c.frames):>6}  {c.mean_psnr:8.3f}  {c.mean_ssim:7.4f}")
        o = self.overall()
        if o:
            lines.append(f"{'overall':<{width}}  {o['frames']:>6}  {o['psnr']:8.3f}  {o['ssim']:7.4f}")
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike) -> None:
        """Rows clip, frame, psnr, ssim: every frame, then a 'mean' row per clip, then 'overall'."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["clip", "frame", "psnr", "ssim"])
            for c in self.clips():
                for f, p, s in zip(c.frames, c.psnr, c.ssim, strict=True):
                    w.writerow([c.name, f, f"{p:.6f}", f"{s:.6f}"])
                w.writerow([c.name, "mean", f"{c.mean_psnr:.6f}", f"{c.mean_ssim:.6f}"])
            o = self.overall()
            w.writerow(["overall", "mean", f"{o['psnr']:.6f}", f"{o['ssim']:.6f}"])

    def write_json(self, path: str | os.PathLike) -> None:
        doc = {
            "crop_border": self.crop_border,
            "y_channel": self.y_channel,
            "overall": self.overall(),
            "clips": {
                c.name: {
                    "psnr": c.mean_psnr,
                    "ssim": c.mean_ssim,
                    "frames": [{"frame": f, "psnr": p, "ssim": s} for f, p, s in zip(c.frames, c.psnr, c.ssim,
                                                                                      strict=True)],
                }
                for c in self.clips()
            },
        }
        Path(path).write_text(json.dumps(doc, indent=2))


def _scan(root: Path, what: str) -> ScanResult:
    if not root.exists():
        raise DatasetError(f"{what} does not exist", root, "check the path")
    return scan_frames(root)


def _single_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTS


def _video_pair(name: str, pred: Path, gt: Path) -> ClipPair:
    n = probe_video(pred)[0]
    return ClipPair(name, pred, gt, [f"{i:06d}" for i in range(n)])


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
             device: str = "cpu", progress: bool = True) -> ScoreBoard:
    """Score every predicted frame against its GT frame (read as 8-bit, as they are stored)."""
    board = ScoreBoard(crop_border, y_channel)
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
        description="PSNR and SSIM of restored frames against ground truth (folders of frames, videos, clip trees).",
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
                         device=args.device, progress=not args.no_progress)
        report(board, args)
    except EdvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    o = board.overall()
    print(f"evaluated {o['frames']} frames in {o['clips']} clips in {time.monotonic() - t0:.1f}s: "
          f"PSNR {o['psnr']:.3f} dB, SSIM {o['ssim']:.4f} ({board.settings()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
