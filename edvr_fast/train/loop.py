"""The training loop: set-up from a TrainConfig, the optimisation steps, log-time checks (loss, offsets),
validation, checkpoints, resume and clean stops on SIGTERM/SIGINT; rank 0 alone logs and saves.
"""

from __future__ import annotations

import math
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml

from edvr_fast.config import TrainConfig
from edvr_fast.data.meta import load_meta
from edvr_fast.errors import EdvrError
from edvr_fast.models import EDVR
from edvr_fast.ops import backend
from edvr_fast.train import checkpoints as ckpt
from edvr_fast.train import distributed
from edvr_fast.train.data import TrainBatches, describe_clips, resolve_source, val_samples, write_clip_lists
from edvr_fast.train.logs import RunLog
from edvr_fast.train.schedules import build as build_schedule
from edvr_fast.train.steps import EMA, FusionOnly, build_optimizer, charbonnier, set_learning_rates
from edvr_fast.train.validate import evaluate


class TrainingDiverged(EdvrError):
    """The loss became NaN/Inf, or the DCN offsets exploded beyond what rollbacks could fix."""


@dataclass
class RunResult:
    out: Path
    iterations: int
    checkpoint: Path | None = None
    best: Path | None = None
    val: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    wall_s: float = 0.0
    frames: Path | None = None
    it_per_s: float = 0.0  # training steps only (validation and checkpoints excluded)
    samples_per_s: float = 0.0  # clips per second over all processes


def default_out(resume: str | None) -> Path:
    """runs/<timestamp>, or with --resume auto the newest run under runs/ (to continue it)."""
    runs = Path("runs")
    if resume == "auto" and runs.is_dir():
        existing = sorted(p for p in runs.iterdir() if p.is_dir() and (p / "checkpoints").is_dir())
        if existing:
            return existing[-1]
    return runs / datetime.now().strftime("%Y%m%d-%H%M%S")


class _StopFlag:
    """SIGTERM/SIGINT ask for a checkpoint and a clean exit after the current step; a second SIGINT aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with the caller
                return

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


class Trainer:
    def __init__(self, cfg: TrainConfig, out: str | Path | None = None, resume: str | None = None,
                 progress: bool | None = None):
        self.cfg = cfg
        self.info = distributed.init(cfg.train.device, cfg.dist.timeout_s)
        info = self.info
        out_path = Path(out) if out is not None else default_out(resume)
        self.out = Path(distributed.broadcast_object(str(out_path), info))
        self.ckpt_dir = self.out / "checkpoints"
        show = cfg.log.progress if progress is None else progress
        self.log = RunLog(self.out, cfg.log.tensorboard, enabled=info.is_main)
        self.progress = show and info.is_main
        # Rank-independent control messages (stop requests) travel on a CPU group, so agreeing on them
        # every step never waits for the GPU.
        self.ctrl = dist.new_group(backend="gloo") if info.enabled else None
        self.watch = distributed.Watchdog(info, cfg.dist.timeout_s,
                                          on_abort=lambda msg: self.log.event("dist_timeout", message=msg))
        self.stop = _StopFlag()

        seed = cfg.train.seed
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)

        self.src = resolve_source(cfg, progress=self.progress)
        self.batches = TrainBatches(cfg, self.src, info, self.log.say)
        self.pack_id = load_meta(self.src.pack).pack_id  # a data position is only valid for its pack
        self.val_ds, self.val_idx = val_samples(cfg, self.src, info) if self.src.no_val is None else (None, [])

        model = EDVR(cfg.model).to(info.device)
        if cfg.train.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = EMA(model, cfg.train.ema_decay) if cfg.train.ema_decay else None
        self.opt = build_optimizer(model, cfg)
        self.fusion_only = FusionOnly(model)
        self.schedule = build_schedule(cfg)
        net: torch.nn.Module = model
        if info.enabled:
            ids = [info.device.index] if info.device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.net = torch.compile(net) if cfg.train.compile else net

        self.samples_per_it = cfg.loader.batch_size * info.world_size
        self.it = 0
        self.best_psnr = -math.inf
        self.dcn_scale = 1.0
        self.rollbacks = 0
        self.good_ckpt: Path | None = None
        self.last_ckpt: Path | None = None
        self.last_val: dict[str, float] = {}
        self.loss_sum = torch.zeros((), device=info.device)
        self.loss_n = 0
        self.step_time, self.step_iters = 0.0, 0  # time spent in training steps, for the throughput line
        self.trace = None
        if cfg.log.trace_samples:
            self.out.mkdir(parents=True, exist_ok=True)
            self.trace = open(self.out / f"samples_rank{info.rank}.txt", "a")
        if resume is not None:
            self._resume(resume)

    # ------------------------------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        raw = self.model.state_dict()
        deploy = self.ema.model.state_dict() if self.ema is not None else raw
        return {
            "format": ckpt.FORMAT,
            "model_params": self.cfg.model.to_dict(),
            "model": deploy,  # what inference loads (EMA weights when EMA is on)
            "iteration": self.it,
            "config": self.cfg.to_dict(),
            "metrics": dict(self.last_val),
            "train": {
                "model": raw if self.ema is not None else None,
                "optimizer": self.opt.state_dict(),
                "iteration": self.it,
                "rng": ckpt.rng_state(),
                "data": self.batches.state_dict(),
                "best_psnr": self.best_psnr,
                "dcn_scale": self.dcn_scale,
                "rollbacks": self.rollbacks,
                "world_size": self.info.world_size,
                "pack_id": self.pack_id,
            },
        }

    def save(self) -> None:
        """Every rank checks the loss first (never save NaN weights); rank 0 writes; all wait for it."""
        self._check_finite()
        if self.info.is_main:
            path = ckpt.atomic_save(self._state(), self.ckpt_dir / ckpt.checkpoint_name(self.it))
            ckpt.prune(self.ckpt_dir, self.cfg.checkpoint.keep, protect={self.good_ckpt} if self.good_ckpt else None)
            self.last_ckpt = path
            self.log.event("checkpoint", iteration=self.it, path=path)
        self.good_ckpt = self.ckpt_dir / ckpt.checkpoint_name(self.it)
        distributed.barrier(self.info)

    def _resume(self, resume: str) -> None:
        if resume == "auto":
            found = ckpt.find_latest(self.ckpt_dir, map_location=self.info.device, check=self._inconsistent,
                                     say=self.log.say)
            if found is None:
                self.log.say(f"--resume auto: no checkpoint in {self.ckpt_dir}, starting from scratch")
                return
            path, state = found
        else:
            path = Path(resume)
            state = ckpt.load_checkpoint(path, map_location=self.info.device)
        self._load(state)
        self.log.say(f"resumed from {path} at iteration {self.it}")
        self.log.event("resume", path=path, iteration=self.it)
        self.good_ckpt = path

    def _inconsistent(self, state: dict[str, Any]) -> str | None:
        """Why a checkpoint that loads does not fit this run (see checkpoints.inconsistency), else None."""
        tr = state.get("train")
        if isinstance(tr, dict) and tr.get("world_size") not in (None, self.info.world_size):
            return None  # not the checkpoint's fault: _load says to resume with the same number of processes
        return ckpt.inconsistency(state, self.model.state_dict(), self.opt, self.batches.state_dict(),
                                  self.pack_id)

    def _load(self, state: dict[str, Any]) -> None:
        tr = state["train"]
        if tr["world_size"] != self.info.world_size:
            raise EdvrError(f"the checkpoint was written by {tr['world_size']} process(es), this run has "
                            f"{self.info.world_size}", hint="resume with the same number of processes")
        self.model.load_state_dict(tr["model"] if tr["model"] is not None else state["model"])
        if self.ema is not None:
            self.ema.model.load_state_dict(state["model"])
        self.opt.load_state_dict(tr["optimizer"])
        self.it = int(tr["iteration"])
        self.batches.load_state_dict(tr["data"])
        ckpt.set_rng_state(tr["rng"])
        self.best_psnr = float(tr["best_psnr"])
        self.dcn_scale = float(tr["dcn_scale"])
        self.rollbacks = int(tr["rollbacks"])
        self.last_val = dict(state.get("metrics") or {})

    # ----------------------------------------------------------------------------------------- checks
    def _check_finite(self) -> None:
        if self.loss_n and not bool(torch.isfinite(self.loss_sum)):
            raise TrainingDiverged(
                f"the loss became NaN/Inf between iterations {self.it - self.loss_n + 1} and {self.it}",
                self.good_ckpt, "resume from this checkpoint with a lower optim.lr, optim.grad_clip set, or "
                "bf16 off" if self.good_ckpt else "lower optim.lr, set optim.grad_clip, or turn bf16 off")

    def _offsets(self) -> tuple[float, float]:
        """(mean |offset|, max |offset|) since the last read, the worst over ranks (one small sync)."""
        stats = distributed.all_reduce(self.model.offset_stats().float(), self.info, op="max")
        mean, mx = stats.tolist()
        return mean, mx

    def _guard_offsets(self, mean: float) -> bool:
        """Warn on exploding offsets; with rollback, restore the last good checkpoint. True if rolled back."""
        g = self.cfg.offsets
        if mean <= g.warn_mean:
            return False
        self.log.say(f"warning: mean DCN offset {mean:.1f} px > offsets.warn_mean={g.warn_mean} at iteration "
                     f"{self.it}: alignment is diverging")
        self.log.event("offset_warning", iteration=self.it, offset_mean=mean)
        if not g.rollback:
            return False
        if self.good_ckpt is None or self.rollbacks >= g.max_rollbacks:
            raise TrainingDiverged(f"DCN offsets exploded (mean {mean:.1f} px) and "
                                   + ("no checkpoint precedes it" if self.good_ckpt is None
                                      else f"{self.rollbacks} rollbacks did not help"),
                                   hint="lower optim.dcn_lr_mult or optim.lr, or set model.max_offset")
        rollbacks, scale = self.rollbacks, self.dcn_scale  # the checkpoint holds older values of these
        state = ckpt.load_checkpoint(self.good_ckpt, map_location=self.info.device)
        self._load(state)
        self.rollbacks = rollbacks + 1
        self.dcn_scale = scale * g.dcn_lr_decay
        self.model.offset_stats()  # forget the statistics of the diverged steps
        self.loss_sum.zero_()
        self.loss_n = 0
        self.log.say(f"rolled back to {self.good_ckpt} (iteration {self.it}); DCN learning rate now "
                     f"x{self.dcn_scale:g}")
        self.log.event("rollback", iteration=self.it, path=self.good_ckpt, dcn_scale=self.dcn_scale)
        return True

    def _stop_requested(self) -> bool:
        if self.ctrl is None:
            return self.stop.requested
        flag = torch.tensor([int(self.stop.requested)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self.ctrl)
        return bool(flag.item())  # a CPU tensor: no device sync

    # ------------------------------------------------------------------------------------------- steps
    def _step(self, lq: torch.Tensor, gt: torch.Tensor) -> None:
        cfg = self.cfg
        set_learning_rates(self.opt, self.schedule.lr(self.it), self.dcn_scale)
        with torch.autocast(self.info.device.type, dtype=torch.bfloat16, enabled=cfg.train.bf16):
            out = self.net(lq)
        loss = charbonnier(out, gt, cfg.loss.eps, cfg.loss.reduction)
        loss.backward()
        if self.it < cfg.schedule.tsa_iters:
            self.fusion_only.apply()
        if cfg.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None],
                                           cfg.optim.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.loss_sum += loss.detach()
        self.loss_n += 1
        self.it += 1

    def _log(self, t_last: float, it_last: int) -> bool:
        """The log interval: the one place the loop reads device values. True when it rolled back."""
        self._check_finite()
        loss = self.loss_sum.item() / max(self.loss_n, 1)
        mean, mx = self._offsets()
        self.loss_sum.zero_()
        self.loss_n = 0
        if self._guard_offsets(mean):
            return True
        # The loss was read above, so every step of the interval has finished on the device.
        elapsed = max(time.monotonic() - t_last, 1e-9)
        self.step_time += elapsed
        self.step_iters += self.it - it_last
        rate = (self.it - it_last) / elapsed
        lr = self.schedule.lr(self.it - 1)
        rec = {"loss": loss, "lr": lr, "offset_mean": mean, "offset_max": mx, "it_per_s": rate,
               "samples_per_s": rate * self.samples_per_it}
        self.log.event("train", iteration=self.it, **rec)
        self.log.scalars(self.it, "train", rec)
        if self.log.bar is not None:
            self.log.bar.set_postfix(loss=f"{loss:.4g}", offset=f"{mean:.2f}",
                                     samples_s=f"{rate * self.samples_per_it:.3g}")
        return False

    def validate(self) -> dict[str, float]:
        cfg = self.cfg
        model = self.ema.model if self.ema is not None else self.model
        samples = self.out / "samples" / f"iter_{self.it:08d}" if self.info.is_main else None
        res = evaluate(model, self.val_ds, self.val_idx, self.info, crop_border=cfg.val.crop_border,
                       y_channel=cfg.val.y_channel, autocast=cfg.train.bf16, center=cfg.model.center,
                       samples_dir=samples, save_samples=cfg.val.save_samples)
        self.last_val = res
        self.log.event("val", iteration=self.it, **res)
        self.log.scalars(self.it, "val", res)
        extra = f", SSIM {res['ssim']:.4f}" if "ssim" in res else ""
        ident = f", SSIM {res['identity_ssim']:.4f}" if "identity_ssim" in res else ""
        self.log.say(f"val @ {self.it}: PSNR {res['psnr']:.2f} dB{extra} (identity {res['identity_psnr']:.2f} dB"
                     f"{ident}, {res['frames']} frames)")
        if res["psnr"] > self.best_psnr:
            self.best_psnr = res["psnr"]
            if self.info.is_main:
                state = self._state()
                del state["train"]  # weights for inference only; resume uses the periodic checkpoints
                ckpt.atomic_save(state, self.ckpt_dir / ckpt.BEST)
        return res

    # --------------------------------------------------------------------------------------------- run
    def run(self) -> RunResult:
        cfg, info = self.cfg, self.info
        t0 = time.monotonic()
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            write_clip_lists(self.out, self.src)
        self.log.event("start", backend=backend(), device=str(info.device), world_size=info.world_size,
                       loader=self.batches.kind, data=self.src.pack, config=cfg.to_dict(), torch=torch.__version__)
        self.log.say(f"edvr_fast.train: {info.world_size} process(es) on {info.device}, DCN kernel {backend()}, "
                     f"{self.batches.kind} loader, data {self.src.pack}, output {self.out}")
        self.log.say(describe_clips(self.src))
        self.log.event("step", **self.step_setup())
        self.log.say("step: " + ", ".join(f"{k} {v}" for k, v in self.step_setup().items()))
        if self.log.tb_notice:
            self.log.say(self.log.tb_notice)
        self.stop.install()
        interrupted = False
        try:
            self.model.train()
            if self.progress:
                from tqdm import tqdm

                self.log.bar = tqdm(total=cfg.train.iters, initial=self.it, unit="it", dynamic_ncols=True,
                                    desc="train")
            stream = iter(self.batches)
            t_last, it_last = time.monotonic(), self.it
            while self.it < cfg.train.iters:
                lq, gt = next(stream)
                if self.trace is not None and self.batches.keys is not None:
                    self.trace.write(f"{self.it} " + " ".join(self.batches.keys) + "\n")
                self.watch.reached(self.it + 1)  # names a rank that does not come (dist.timeout_s)
                self._step(lq, gt)
                if self.log.bar is not None:
                    self.log.bar.update(1)
                last = self.it == cfg.train.iters
                logged = self.it % cfg.log.every == 0 or last
                if logged and self._log(t_last, it_last):
                    stream = iter(self.batches)  # the data position was rolled back too
                    if self.log.bar is not None:
                        self.log.bar.reset(total=cfg.train.iters)
                        self.log.bar.update(self.it)
                    t_last, it_last = time.monotonic(), self.it
                    continue
                self.watch.passed()  # the step and its log-time sync are done; validation / saving are not watched
                if self.val_ds is not None and ((cfg.val.every and self.it % cfg.val.every == 0) or last):
                    self.validate()
                if self.it % cfg.checkpoint.every == 0 or last:
                    self.save()
                if logged:  # the next interval times steps only, not this validation or checkpoint
                    t_last, it_last = time.monotonic(), self.it
                if not last and self._stop_requested():
                    interrupted = True
                    self.save()
                    self.log.say(f"stopped by signal at iteration {self.it}; checkpoint saved. Continue with "
                                 f"--resume auto --out {self.out}")
                    break
        finally:
            self.watch.close()
            self.stop.restore()
            self.batches.close()
            if self.trace is not None:
                self.trace.close()
            it_s, samples_s = self.throughput()
            if self.step_iters:
                self.log.say(f"throughput: {it_s:.2f} it/s, {samples_s:.1f} samples/s (batch "
                             f"{cfg.loader.batch_size} x {info.world_size} process(es); training steps only)")
            self.log.event("end", iteration=self.it, interrupted=interrupted, wall_s=time.monotonic() - t0,
                           it_per_s=it_s, samples_per_s=samples_s)
            self.log.close()
        best = self.ckpt_dir / ckpt.BEST
        return RunResult(self.out, self.it, self.last_ckpt, best if best.exists() else None, self.last_val,
                         interrupted, time.monotonic() - t0, self.src.frames, it_s, samples_s)

    def throughput(self) -> tuple[float, float]:
        """(iterations/s, samples/s) over the training steps so far (validation, checkpoints excluded)."""
        if not self.step_iters:
            return 0.0, 0.0
        rate = self.step_iters / self.step_time
        return rate, rate * self.samples_per_it

    def step_setup(self) -> dict[str, Any]:
        """What the training step runs: precision, memory format, compilation, optimiser kernel, EMA."""
        t = self.cfg.train
        return {"precision": "bf16 autocast" if t.bf16 else "fp32",
                "channels_last": t.channels_last, "compile": t.compile,
                "adam": "fused" if t.fused_adam else ("foreach" if self.info.device.type == "cuda" else "for-loop"),
                "ema": t.ema_decay, "cpu_threads": torch.get_num_threads()}
