"""`python -m edvr_fast.train`: the command line (config file, overrides, output, resume) around the loop;
prints user errors without a traceback and ends with where the results are and how to run inference.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from edvr_fast.config import TrainConfig, apply_override, load_dict, read_yaml
from edvr_fast.errors import EdvrError
from edvr_fast.train import compat, demo

EPILOG = """examples:
  python -m edvr_fast.train                         # small EDVR on the built-in synthetic set (CPU: minutes)
  python -m edvr_fast.train --config my.yml --set optim.lr=1e-4 --set loader.batch_size=8
  python -m edvr_fast.train --preset edvr-m-sr4 --data packs/reds --out runs/reds
  python -m edvr_fast.train --data packs/mine --preset edvr-m-deblur --no-val   # every clip trains
  python -m edvr_fast.train --config train_EDVR_M.yml    # original EDVR / BasicSR option files are read too
  python -m edvr_fast.train --resume auto --out runs/reds  # continue the newest valid checkpoint
  torchrun --nproc_per_node=8 -m edvr_fast.train --config my.yml   # many GPUs, same config
"""


def is_demo(config: str | None, preset: str | None, data: str | None, sets: Sequence[str] = ()) -> bool:
    """The built-in default run: none of --config, --preset, --data (nor --set preset= / data.path=); its
    settings are edvr_fast.train.demo's."""
    named = any(a.split("=", 1)[0].strip() in ("preset", "data.path") for a in sets)
    return config is None and preset is None and data is None and not named


def build_config(config: str | None, sets: Sequence[str], preset: str | None = None, data: str | None = None,
                 iters: int | None = None, say=print, no_val: bool = False) -> TrainConfig:
    """TrainConfig from a file (ours, or an original-EDVR / BasicSR option file) and overrides.

    Precedence, lowest first: the schema's defaults (user runs), the demo run's settings (only with none of
    config / preset / data), the file, --preset / --data / --iters / --no-val, then each --set in order.
    """
    d = read_yaml(config) if config else {}
    where = config or "config"
    flavour = compat.detect(d)
    if flavour is not None:
        d, ignored, notes = compat.convert(d, flavour, where)
        name = "original EDVR" if flavour == "original" else "BasicSR"
        say(f"read {config} as a {name} option file")
        for note in notes:
            say(f"  note: {note}")
        if ignored:
            say(f"  ignored {len(ignored)} key(s) with no equivalent here: {', '.join(ignored)}")
    if is_demo(config, preset, data, sets):
        d = demo.demo_dict()
    extra = list(sets)
    if no_val:
        extra.insert(0, "val.enabled=false")
    if iters is not None:
        extra.insert(0, f"train.iters={iters}")
    if data is not None:
        extra.insert(0, f"data.path={data}")
    if preset is not None:
        extra.insert(0, f"preset={preset}")
    for a in extra:
        apply_override(d, a)
    return load_dict(d, where)


def config_yaml(cfg: TrainConfig, demo_run: bool) -> str:
    """--print-config: the resolved config as YAML, headed by where its defaults came from."""
    import yaml

    if demo_run:
        user = TrainConfig().to_dict()
        changed = []
        for key, value in demo.DEMO.items():
            node = user
            for k in key.split("."):
                node = node[k]
            changed.append(f"#   {key}: {value!r} (user runs: {node!r})")
        head = ["# the built-in default run (no --data, --preset or --config): the schema's defaults with its",
                "# own settings from edvr_fast/train/demo.py:", *changed]
    else:
        head = ["# a user run: the schema's defaults (README, Train), then the file / flags / --set values"]
    return "\n".join(head) + "\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m edvr_fast.train", description="Train EDVR (SR, deblurring).",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE.yml", help="our schema, or an original-EDVR / BasicSR option file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. optim.lr=1e-4 (repeatable)")
    p.add_argument("--preset", help="a published EDVR architecture by name (see edvr_fast.models.preset_names)")
    p.add_argument("--data", metavar="PACK", help="packed dataset folder (default: the built-in synthetic set)")
    p.add_argument("--iters", type=int, help="total training iterations (train.iters)")
    p.add_argument("--no-val", action="store_true",
                   help="train without validation: no clips held out (val.enabled=false)")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/<timestamp>)")
    p.add_argument("--resume", metavar="auto|CKPT",
                   help="auto: the newest valid checkpoint in --out (default: the newest run); or a checkpoint file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    return p.parse_args(argv)


def _summary(res, cfg: TrainConfig, no_val: str | None = None) -> str:
    from edvr_fast.train.checkpoints import BEST

    lines = []
    v = res.val
    if v:
        gain = v["psnr"] - v["identity_psnr"]
        extra = f", SSIM {v['ssim']:.4f}" if "ssim" in v else ""
        ident = f", SSIM {v['identity_ssim']:.4f}" if "identity_ssim" in v else ""
        lines.append(f"done: {res.iterations} iterations in {res.wall_s:.0f}s; validation PSNR {v['psnr']:.2f} dB"
                     f"{extra} vs identity (input frame) {v['identity_psnr']:.2f} dB{ident} ({gain:+.2f} dB)")
    elif no_val:
        lines.append(f"done: {res.iterations} iterations in {res.wall_s:.0f}s; no validation ({no_val}), so no "
                     "measure of quality: evaluate the checkpoint on held-out clips")
    # the throughput line is the loop's own (stderr, also when a run stops early): not repeated here
    ckpt = res.best or res.checkpoint or (res.out / "checkpoints" / BEST)
    lines.append(f"checkpoint: {ckpt}" + (f" (latest: {res.checkpoint})" if res.checkpoint else ""))
    lines.append(f"logs:       {res.out / 'log.jsonl'}")
    lines.append(f"clips:      {res.out / 'clips.json'} (the clips trained and validated on)")
    if not no_val:
        lines.append(f"samples:    {res.out / 'samples'} ([input | output | GT] per validation frame, enlarged, "
                     "with PSNR)")
    if res.frames is not None:
        clip = sorted((res.frames / "input").iterdir())[-1]
    else:
        clip = Path("<folder of input frames or a video>")
    cmd = ["python", "-m", "edvr_fast.infer", "--checkpoint", str(ckpt), "--input", str(clip),
           "--output", str(res.out / "infer")]
    lines.append(f"inference:  {shlex.join(cmd)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = build_config(args.config, args.set, args.preset, args.data, args.iters,
                           say=lambda m: print(m, file=sys.stderr), no_val=args.no_val)
        if args.print_config:
            print(config_yaml(cfg, is_demo(args.config, args.preset, args.data, args.set)), end="")
            return 0
        from edvr_fast.train import distributed
        from edvr_fast.train.loop import Trainer

        try:
            trainer = Trainer(cfg, out=args.out, resume=args.resume, progress=not args.no_progress)
            res = trainer.run()
            if trainer.info.is_main:
                print(_summary(res, cfg, trainer.src.no_val))
        finally:
            distributed.shutdown()
    except EdvrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
