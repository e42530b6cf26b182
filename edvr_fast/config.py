"""The typed training configuration: dataclasses composing the model's, the dataset's and the loader's
parameters, read from YAML or a dict with `--set a.b=value` overrides; unknown keys and bad values are errors.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edvr_fast.data.degrade_random import DegradeParams
from edvr_fast.data.sampler import SampleParams
from edvr_fast.errors import ConfigError
from edvr_fast.models.params import EDVRParams
from edvr_fast.models.presets import preset as get_preset

# The defaults are those of user runs (--data, --preset, --config): EDVR-M x4 SR trained as the published
# EDVR-M was (Adam at 4e-4, cosine annealing to 1e-7, 256 px GT crops, 4 clips per GPU, 600k iterations, no
# EMA), with one cosine period over train.iters instead of BasicSR's four 150k restarts so that a shorter
# --iters keeps the shape. The built-in default run has its own settings: edvr_fast/train/demo.py.
LOADERS = ("auto", "fused", "reference")
REDUCTIONS = ("mean", "sum")
SCHEDULES = ("cosine", "constant", "multistep")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class DataConfig:
    """Which pack and which clips. path None: the built-in synthetic set (generated and cached on first use)."""

    path: str | None = None
    val_clips: tuple[str, ...] | None = None
    val_fraction: float | None = None
    split_seed: int = 0
    sample: SampleParams = field(default_factory=SampleParams)
    # The synthetic set (path None): clips, of which the last synthetic_val_clips validate; frames per
    # clip; GT frame side; sub-frames averaged into each input frame (1: sharp). Its scale is model.scale.
    synthetic_clips: int = 12
    synthetic_val_clips: int = 2
    synthetic_frames: int = 16
    synthetic_size: int = 64
    synthetic_blur: int = 5
    synthetic_speed: float = 4.0  # largest motion in GT pixels per frame: the length of the blur streaks
    synthetic_noise: float = 0.0  # sensor noise on the input frames, std in 8-bit levels (0: none)
    # On-the-fly LQ made from the GT window for training (off by default; validation keeps the pack's LQ).
    degrade: DegradeParams = field(default_factory=DegradeParams)


@dataclass
class LoaderConfig:
    """kind: fused (C++ loader), reference (ClipDataset + torch DataLoader), auto (fused when available)."""

    kind: str = "auto"
    batch_size: int = 4  # per process
    num_workers: int = 1  # DataLoader workers, or fused-loader threads
    prefetch: int = 2


@dataclass
class OptimConfig:
    lr: float = 4e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    dcn_lr_mult: float = 1.0  # learning rate of DCN/offset parameters = lr * dcn_lr_mult
    grad_clip: float | None = None  # max global grad norm; None: off


@dataclass
class LossConfig:
    """Charbonnier sqrt(d^2 + eps^2). Published EDVR summed over pixels; Adam makes the scale nearly
    irrelevant, but "mean" keeps grad_clip and eps independent of batch and crop size, hence the default."""

    eps: float = 1e-3
    reduction: str = "mean"


@dataclass
class ScheduleConfig:
    """kind "cosine": cosine annealing with restarts: periods (None: one period of train.iters), each
    restart's weight scales the amplitude above eta_min. kind "multistep": optim.lr multiplied by gamma at
    each of the milestones (iterations). kind "constant": optim.lr throughout. All: linear warm-up;
    TSA-only phase trains only fusion. Keys of another kind are unused."""

    kind: str = "cosine"
    periods: tuple[int, ...] | None = None
    restart_weights: tuple[float, ...] | None = None
    eta_min: float = 1e-7
    milestones: tuple[int, ...] | None = None
    gamma: float = 0.5
    warmup_iters: int = 0
    tsa_iters: int = 0


@dataclass
class TrainSection:
    iters: int = 600000
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    # Adam's fused kernel (one kernel for all parameters). Opt-in: never measured on a GPU here, and
    # no faster on 2 CPU cores at the default run's size.
    fused_adam: bool = False
    ema_decay: float | None = None  # EMA of the weights (validated and deployed); None: no EMA


@dataclass
class ValConfig:
    """enabled false: no validation at all (every clip trains). every 0: validate only at the end."""

    enabled: bool = True
    every: int = 5000  # iterations; 0: only at the end
    crop_border: int = 0
    y_channel: bool = False
    max_samples: int | None = 16  # validation frames per run (evenly spread); None: all
    save_samples: int = 4


@dataclass
class LogConfig:
    every: int = 100
    progress: bool = True
    tensorboard: str = "auto"  # auto: when installed; "on" / "off"
    trace_samples: bool = False  # each rank writes the sample keys it trained on (debugging, tests)


@dataclass
class CheckpointConfig:
    every: int = 5000
    keep: int = 3


@dataclass
class OffsetGuardConfig:
    """Offset explosion guard, read at log time: warn when mean |offset| > warn_mean pixels; with
    rollback, restore the last good checkpoint and multiply the DCN learning rate by dcn_lr_decay."""

    warn_mean: float = 50.0
    rollback: bool = False
    dcn_lr_decay: float = 0.5
    max_rollbacks: int = 3


@dataclass
class DistConfig:
    # A rank waiting this long in a training step for another stops the job naming the late rank(s)
    # (train/distributed.py's Watchdog); other collectives time out after it plus max(10 s, 10%).
    timeout_s: float = 300.0


@dataclass
class TrainConfig:
    """Everything a run needs. `preset` names a published architecture; `model` keys override it."""

    preset: str | None = None
    model: EDVRParams = field(default_factory=EDVRParams)
    data: DataConfig = field(default_factory=DataConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainSection = field(default_factory=TrainSection)
    val: ValConfig = field(default_factory=ValConfig)
    log: LogConfig = field(default_factory=LogConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    offsets: OffsetGuardConfig = field(default_factory=OffsetGuardConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (tuples as lists), loadable again by `from_dict`."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, where: str = "config") -> TrainConfig:
        return load_dict(d or {}, where)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# --------------------------------------------------------------------------------------------- typing
def _check_value(value: Any, tp: Any, key: str, where: str) -> Any:
    """`value` converted to annotation `tp` (int, float, bool, str, X | None, tuple[X, ...], tuple[X, Y])."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, key, where)
            except ConfigError:
                pass
        raise ConfigError(f"{key}={value!r} has the wrong type (expected {_type_name(tp)})", where)
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool) and args[-1] is Ellipsis:
            value = [value]  # a single value where a list is expected
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r}: expected a list ({_type_name(tp)})", where)
        if args[-1] is Ellipsis:
            return tuple(_check_value(v, args[0], key, where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}={value!r}: expected {len(args)} values", where)
        return tuple(_check_value(v, a, key, where) for v, a in zip(value, args))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected true or false", where)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}={value!r}: expected an integer", where)
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads 1e-4 (no dot) as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r}: expected a number", where)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r}: expected a string", where)
        return value
    raise ConfigError(f"{key}: unsupported type {tp}", where)


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _build(cls: type, d: Any, prefix: str, where: str, base: Any = None) -> Any:
    """Instance of dataclass `cls` from dict `d`, starting from `base` (or the defaults)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping of keys, got {d!r}", where)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        names = ", ".join(f"{prefix}{k}" for k in unknown)
        raise ConfigError(f"unknown key(s) {names}; valid keys of {prefix.rstrip('.') or 'the top level'}: "
                          f"{', '.join(fields)}", where)
    base = base if base is not None else cls()
    values = {}
    for name in fields:
        current = getattr(base, name)
        if name not in d:
            values[name] = current
        elif dataclasses.is_dataclass(hints[name]):
            values[name] = _build(hints[name], d[name] or {}, f"{prefix}{name}.", where, current)
        else:
            values[name] = _check_value(d[name], hints[name], f"{prefix}{name}", where)
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{prefix.rstrip('.')}: {exc}", where) from exc


def load_dict(d: dict[str, Any], where: str = "config") -> TrainConfig:
    """A validated TrainConfig from a plain dict in our schema (see TrainConfig for the sections)."""
    if not isinstance(d, dict):
        raise ConfigError(f"the config must be a mapping of sections, got {type(d).__name__}", where)
    d = dict(d)
    name = d.get("preset")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"preset={name!r}: expected a preset name", where)
    base = TrainConfig()
    if name is not None:
        try:
            base.model = get_preset(name)
        except ConfigError as exc:
            raise ConfigError(str(exc), where) from exc
    cfg = _build(TrainConfig, d, "", where, base)
    validate(cfg, where)
    return cfg


def _need(ok: bool, key: str, value: Any, why: str, where: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: {why}", where)


def validate(cfg: TrainConfig, where: str = "config") -> None:
    """Range checks and cross-section consistency."""
    s, o = cfg.data.sample, cfg.optim
    try:
        s.validate()
        cfg.model.validate()
        cfg.data.degrade.validate("data.degrade.")
    except ConfigError as exc:
        raise ConfigError(str(exc), where) from exc
    _need(s.num_frame == cfg.model.num_frame, "data.sample.num_frame", s.num_frame,
          f"must equal model.num_frame ({cfg.model.num_frame})", where)
    _need(cfg.data.synthetic_clips >= 2, "data.synthetic_clips", cfg.data.synthetic_clips, "must be >= 2", where)
    _need(0 < cfg.data.synthetic_val_clips < cfg.data.synthetic_clips, "data.synthetic_val_clips",
          cfg.data.synthetic_val_clips, "must be in [1, synthetic_clips - 1]", where)
    _need(0 <= cfg.data.synthetic_speed <= 32, "data.synthetic_speed", cfg.data.synthetic_speed, "must be in [0, 32]",
          where)
    _need(0 <= cfg.data.synthetic_noise <= 64, "data.synthetic_noise", cfg.data.synthetic_noise,
          "must be in [0, 64] (8-bit levels)", where)
    _need(cfg.data.synthetic_frames >= 1, "data.synthetic_frames", cfg.data.synthetic_frames, "must be >= 1", where)
    _need(cfg.data.synthetic_blur >= 1, "data.synthetic_blur", cfg.data.synthetic_blur, "must be >= 1", where)
    _need(cfg.data.synthetic_size >= 16 and cfg.data.synthetic_size % 16 == 0, "data.synthetic_size",
          cfg.data.synthetic_size, "must be a multiple of 16, at least 16", where)
    _need(cfg.loader.kind in LOADERS, "loader.kind", cfg.loader.kind, f"must be one of {LOADERS}", where)
    _need(cfg.loader.batch_size >= 1, "loader.batch_size", cfg.loader.batch_size, "must be >= 1", where)
    _need(cfg.loader.num_workers >= 0, "loader.num_workers", cfg.loader.num_workers, "must be >= 0", where)
    _need(cfg.loader.prefetch >= 1, "loader.prefetch", cfg.loader.prefetch, "must be >= 1", where)
    _need(o.lr > 0, "optim.lr", o.lr, "must be > 0", where)
    _need(all(0 <= b < 1 for b in o.betas), "optim.betas", list(o.betas), "each must be in [0, 1)", where)
    _need(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0", where)
    _need(o.dcn_lr_mult >= 0, "optim.dcn_lr_mult", o.dcn_lr_mult, "must be >= 0", where)
    _need(o.grad_clip is None or o.grad_clip > 0, "optim.grad_clip", o.grad_clip, "must be > 0 or null", where)
    _need(cfg.loss.eps > 0, "loss.eps", cfg.loss.eps, "must be > 0", where)
    _need(cfg.loss.reduction in REDUCTIONS, "loss.reduction", cfg.loss.reduction, f"one of {REDUCTIONS}", where)
    sc, t = cfg.schedule, cfg.train
    _need(t.iters >= 1, "train.iters", t.iters, "must be >= 1", where)
    _need(sc.kind in SCHEDULES, "schedule.kind", sc.kind, f"must be one of {SCHEDULES}", where)
    if sc.periods is not None:
        _need(len(sc.periods) > 0 and all(p >= 1 for p in sc.periods), "schedule.periods", list(sc.periods),
              "must be a non-empty list of integers >= 1", where)
    if sc.restart_weights is not None:
        n = len(sc.periods) if sc.periods is not None else 1
        _need(len(sc.restart_weights) == n, "schedule.restart_weights", list(sc.restart_weights),
              f"needs one weight per period ({n})", where)
        _need(all(w >= 0 for w in sc.restart_weights), "schedule.restart_weights", list(sc.restart_weights),
              "weights must be >= 0", where)
    _need(0 <= sc.eta_min <= o.lr, "schedule.eta_min", sc.eta_min, f"must be in [0, optim.lr={o.lr}]", where)
    _need(sc.warmup_iters >= 0, "schedule.warmup_iters", sc.warmup_iters, "must be >= 0", where)
    _need(sc.tsa_iters >= 0, "schedule.tsa_iters", sc.tsa_iters, "must be >= 0", where)
    if sc.kind == "multistep":
        ms = sc.milestones
        _need(ms is not None and len(ms) > 0 and all(m >= 1 for m in ms) and list(ms) == sorted(ms),
              "schedule.milestones", None if ms is None else list(ms),
              "schedule.kind=multistep needs increasing iterations >= 1", where)
    _need(0 < sc.gamma <= 1, "schedule.gamma", sc.gamma, "must be in (0, 1]", where)
    _need(t.device in DEVICES, "train.device", t.device, f"must be one of {DEVICES}", where)
    _need(t.seed >= 0, "train.seed", t.seed, "must be >= 0", where)
    _need(t.ema_decay is None or 0 < t.ema_decay < 1, "train.ema_decay", t.ema_decay, "must be in (0, 1)", where)
    v = cfg.val
    if not v.enabled:
        for key in ("val_clips", "val_fraction"):
            _need(getattr(cfg.data, key) is None, f"data.{key}", getattr(cfg.data, key),
                  "names a validation split but val.enabled is false: remove one of them", where)
    _need(v.every >= 0, "val.every", v.every, "must be >= 0 (0: only at the end)", where)
    _need(v.crop_border >= 0, "val.crop_border", v.crop_border, "must be >= 0", where)
    _need(v.max_samples is None or v.max_samples >= 1, "val.max_samples", v.max_samples, ">= 1 or null", where)
    _need(v.save_samples >= 0, "val.save_samples", v.save_samples, "must be >= 0", where)
    _need(cfg.log.every >= 1, "log.every", cfg.log.every, "must be >= 1", where)
    _need(cfg.log.tensorboard in ("auto", "on", "off"), "log.tensorboard", cfg.log.tensorboard,
          "must be auto, on or off", where)
    _need(cfg.checkpoint.every >= 1, "checkpoint.every", cfg.checkpoint.every, "must be >= 1", where)
    _need(cfg.checkpoint.keep >= 1, "checkpoint.keep", cfg.checkpoint.keep, "must be >= 1", where)
    g = cfg.offsets
    _need(g.warn_mean > 0, "offsets.warn_mean", g.warn_mean, "must be > 0", where)
    _need(0 < g.dcn_lr_decay < 1, "offsets.dcn_lr_decay", g.dcn_lr_decay, "must be in (0, 1)", where)
    _need(g.max_rollbacks >= 0, "offsets.max_rollbacks", g.max_rollbacks, "must be >= 0", where)
    _need(cfg.dist.timeout_s > 0, "dist.timeout_s", cfg.dist.timeout_s, "must be > 0", where)


# ------------------------------------------------------------------------------------ files, overrides
def apply_override(d: dict[str, Any], assignment: str) -> None:
    """Set `a.b.c=value` in the nested dict `d`; the value is parsed as YAML (numbers, lists, null...)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
    key, raw = assignment.split("=", 1)
    parts = [k for k in key.strip().split(".") if k]
    if not parts:
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML ({exc})") from exc
    node = d
    for k in parts[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {assignment!r}: {k} is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path, "check the path given to --config")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", path) from exc
    if not isinstance(d, dict):
        raise ConfigError("the config must be a mapping of sections", path)
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Our YAML schema (or defaults when `path` is None) with `--set` overrides applied, validated."""
    d = read_yaml(path) if path is not None else {}
    for a in overrides:
        apply_override(d, a)
    return load_dict(d, str(path) if path is not None else "config")
