"""`python -m edvr_fast.infer`: restore a folder of frames, a tree of clips or a video with an EDVR checkpoint.

Owns the command line; the work is done by `edvr_fast.inference` (restorer, tiling, ensemble, I/O).

Receptive field per preset (input pixels an output pixel can see, DCN offsets excluded; `--tile-overlap`
defaults to 2 x radius + 16, which makes tiled output equal untiled output): see `--help`, computed from
`edvr_fast.models.receptive_field`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from edvr_fast.data.degrade import degrade, modcrop
from edvr_fast.data.frames import read_clip_frames
from edvr_fast.errors import EdvrError, InputError
from edvr_fast.evaluate import ScoreBoard, add_metric_args, report
from edvr_fast.inference.engine import RestoreOptions, Restorer, frame_to_tensor, tensor_to_frame
from edvr_fast.inference.io import IoTimes, close_sink, find_clips, gt_sources, is_video_path, open_sink, output_path
from edvr_fast.inference.tiling import default_overlap, is_exact
from edvr_fast.inference.video_out import CODECS, PIX_FMTS, EncodeOptions
from edvr_fast.models import load_pretrained, preset, preset_names, receptive_field, receptive_radius


def receptive_table() -> str:
    """One line per preset: receptive field, radius and the exact (default) tile overlap."""
    rows = [f"  {'preset':<26} {'field':>6} {'radius':>7} {'overlap':>8}"]
    for name in preset_names():
        p = preset(name)
        r = receptive_radius(p)
        overlap = default_overlap(p)
        rows.append(f"  {name:<26} {receptive_field(p):>6} {r:>7} {overlap:>8}")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edvr_fast.infer",
        description="Restore video with an EDVR checkpoint (ours, or a published EDVR/BasicSR file).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Receptive field of each preset, in input pixels (upper bound, DCN offsets excluded unless "
        "max_offset clamps them).\n--tile-overlap defaults to the overlap column (exact: tiled == untiled), "
        "capped at half of --tile.\n" + receptive_table(),
    )
    parser.add_argument("--checkpoint", required=True, help="our checkpoint or a published EDVR/BasicSR .pth")
    parser.add_argument("--preset", help="architecture when the file does not say it (published files)")
    parser.add_argument("--input", help="a folder of frames, a folder of clips, or a video file (required unless "
                        "--degrade)")
    parser.add_argument("--output", required=True,
                        help="a folder (PNG frames named as the input frames) or a video file "
                        "(.mp4/.mkv/.mov/.webm/.avi)")
    parser.add_argument("--gt", help="ground truth (same layout as --input): print PSNR/SSIM in the same pass")
    parser.add_argument("--fps", type=float,
                        help="frame rate of video output for frame-folder input (default 25); for a video input "
                        "it re-times the output at this constant rate instead of keeping the input's timestamps "
                        "(needs --no-audio when the input has audio)")
    video = parser.add_argument_group("video output (FFmpeg through PyAV)")
    video.add_argument("--codec", choices=sorted(CODECS),
                       help="h264 (default; vp9 for .webm), h265, av1, vp9, ffv1 (lossless)")
    video.add_argument("--crf", type=int, help="constant quality; default visually lossless: "
                       + ", ".join(f"{k} {v.crf}" for k, v in CODECS.items() if v.crf is not None))
    video.add_argument("--encoder-preset", help="encoder speed: h264/h265 ultrafast..veryslow (default medium), "
                       "av1 (SVT) 0-13 (default 8), vp9 cpu-used 0-8 (default 4)")
    video.add_argument("--pix-fmt", choices=PIX_FMTS,
                       help="yuv420p (default; plays everywhere), yuv444p, rgb (ffv1's default: lossless)")
    video.add_argument("--no-audio", action="store_true",
                       help="drop the input's audio and subtitle streams (copied unchanged by default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4, help="windows per forward call (throughput vs memory)")
    parser.add_argument("--tile", type=int, help="tile side in input pixels, for frames too large for memory")
    parser.add_argument("--tile-overlap", type=int, help="overlap of neighbouring tiles (default: see below)")
    parser.add_argument("--ensemble", action="store_true", help="x8 flip/transpose self-ensemble (8x slower)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--boundary", default="reflection", choices=["replicate", "reflection", "new_info", "circle"],
                        help="how windows are padded at clip ends")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--degrade", choices=("bicubic", "bd"),
                        help="make the input from --gt (HR) with the benchmarks' degradation and score against it")
    parser.add_argument("--scale", type=int, choices=(2, 4), help="with --degrade: must be the checkpoint's scale")
    add_metric_args(parser)
    return parser


def _degraded_input(args: argparse.Namespace) -> tuple[list, bool]:
    """--gt HR --degrade M --scale S: the HR clips are the jobs; their frames are degraded on the way in."""
    if args.input is not None or args.gt is None or args.scale is None:
        raise InputError("--degrade takes --gt HR and --scale S, and no --input (the input is made from --gt)")
    return find_clips(args.gt)


class StageClock:
    """Wall time per stage of inference (decode, model, encode, score); `timed` wraps an iterator.

    On CUDA the model stage ends with a device sync, so its time is the GPU's, not the encoder's.
    """

    def __init__(self, device: str):
        self.seconds: dict[str, float] = {"decode": 0.0, "model": 0.0, "encode": 0.0, "score": 0.0}
        self.sync = torch.device(device).type == "cuda"

    def timed(self, stage: str, items, minus: str | None = None):
        """Yields from `items`, adding the time of each next() to `stage` (less what `minus` gained meanwhile)."""
        it = iter(items)
        while True:
            t0, before = time.perf_counter(), self.seconds[minus] if minus else 0.0
            try:
                item = next(it)
            except StopIteration:
                return
            if self.sync and stage == "model":
                torch.cuda.synchronize()
            self.seconds[stage] += time.perf_counter() - t0 - ((self.seconds[minus] - before) if minus else 0.0)
            yield item

    def add(self, stage: str, t0: float) -> None:
        self.seconds[stage] += time.perf_counter() - t0


def summary(frames: int, clips: int, seconds: float, device: str, split: dict[str, float], output: str) -> str:
    """The last line of `infer`: frames/s and where the time went."""
    parts = ", ".join(f"{k} {v:.1f}s" for k, v in split.items() if k != "score" or v > 0)
    return (f"restored {frames} frames in {clips} clips in {seconds:.1f}s ({frames / max(seconds, 1e-9):.2f} "
            f"frames/s on {device}; {parts}) into {output}")


def run(args: argparse.Namespace, times: IoTimes | None = None) -> tuple[int, int, float, ScoreBoard | None]:
    """Restore every clip; returns (clips, frames, seconds, scores or None). `args.clock` gets the time the loop
    spent per stage; `times` (if given) the decode/encode threads' own busy seconds."""
    encode = EncodeOptions(args.codec, args.crf, args.encoder_preset, args.pix_fmt, audio=not args.no_audio)
    if args.degrade is not None:
        jobs, single = _degraded_input(args)
    elif args.input is None:
        raise InputError("--input is required (or --gt HR --degrade bicubic|bd --scale S)")
    else:
        jobs, single = find_clips(args.input)
    out_root = Path(args.output)
    if not single and is_video_path(out_root):
        raise InputError(f"--input holds {len(jobs)} clips; --output must be a folder, not a video file", out_root)
    if args.degrade is not None:
        gts = {j.name: j.source for j in jobs}
    else:
        gts = gt_sources(args.gt, jobs, single) if args.gt else None
    model = load_pretrained(args.checkpoint, preset=args.preset, map_location="cpu")
    if args.degrade is not None and model.params.scale != args.scale:
        raise InputError(f"--scale {args.scale} does not match the checkpoint's scale x{model.params.scale}",
                         args.checkpoint, f"use --scale {model.params.scale}, or a x{args.scale} checkpoint")
    options = RestoreOptions(batch=args.batch, tile=args.tile, tile_overlap=args.tile_overlap,
                             ensemble=args.ensemble, bf16=args.bf16, boundary=args.boundary)
    restorer = Restorer(model, options, args.device)
    if restorer.overlap is not None and not is_exact(model.params, restorer.overlap):
        print(f"note: tile overlap {restorer.overlap} < 2 x receptive radius + 1 = "
              f"{2 * receptive_radius(model.params) + 1}: seams are blended, not exact", file=sys.stderr)
    board = ScoreBoard(args.crop_border, args.y_channel, not args.no_tof) if gts else None
    total = sum(j.num_frames for j in jobs)
    bar = tqdm(total=total, unit="frame", disable=args.no_progress, dynamic_ncols=True)
    t0 = time.monotonic()
    clock = args.clock = StageClock(args.device)
    done = 0
    for job in jobs:
        bar.set_description(job.name)
        sink = open_sink(output_path(job, out_root, single), job, args.fps, encode)
        gt_frames = clock.timed("decode", read_clip_frames(gts[job.name])) if gts else None
        frames = job.frames()
        if args.degrade is not None:  # GT cropped bottom/right to a multiple of the scale, LQ made from it
            frames = (degrade(modcrop(f, args.scale), args.degrade, args.scale) for f in frames)
            gt_frames = (modcrop(g, args.scale) for g in gt_frames)
        frames = clock.timed("decode", frames)  # the degradation counts as decoding: it makes the input
        restored = clock.timed("model", restorer.restore(frames, job.num_frames, job.name), minus="decode")
        ok = False
        try:
            for i, img in enumerate(restored):
                if board is not None:
                    g = next(gt_frames, None)
                    if g is None:
                        raise InputError(f"GT clip has fewer than {job.num_frames} frames", gts[job.name])
                    # Scored after rounding to 8 bits: the numbers describe the files written.
                    t = time.perf_counter()
                    frame = tensor_to_frame(img)
                    clock.add("encode", t)
                    t = time.perf_counter()
                    board.add(job.name, job.frame_names[i], frame_to_tensor(frame, img.device),
                              frame_to_tensor(g, img.device))
                    clock.add("score", t)
                    t = time.perf_counter()
                    sink.write(frame)
                else:
                    t = time.perf_counter()
                    sink.write(tensor_to_frame(img))
                clock.add("encode", t)
                done += 1
                bar.update(1)
            ok = True
        finally:
            t = time.perf_counter()
            # An error or Ctrl-C aborts the video (its partial file is deleted); only a complete one is renamed.
            close_sink(sink, ok, times)
            clock.add("encode", t)
            if times is not None and job.reader is not None:
                times.add_reader(job.reader)
    bar.close()
    return len(jobs), done, time.monotonic() - t0, board


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        times = IoTimes()
        clips, frames, seconds, board = run(args, times)
        if board is not None:
            report(board, args)
    except EdvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the clip being written was discarded (clips already finished are complete)",
              file=sys.stderr)
        return 130
    extra = ""
    if board is not None:
        o = board.overall()
        extra = f"; PSNR {o['psnr']:.3f} dB, SSIM {o['ssim']:.4f} ({board.settings()})"
    threads = ""
    if times.decode or times.encode:  # video I/O runs on its own threads, beside the model
        threads = f"; video threads busy: decode {times.decode:.1f}s, encode {times.encode:.1f}s"
    print(summary(frames, clips, seconds, args.device, args.clock.seconds, args.output) + extra + threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
