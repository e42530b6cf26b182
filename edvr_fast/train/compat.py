"""Reading option files of the original EDVR (`network_G`) and of BasicSR (`network_g`), `train_EDVR_*.yml`:
their keys mapped onto our schema, and the list of keys we ignored (with why, where it matters).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from edvr_fast.errors import ConfigError

# REDS4, the validation clips of the published REDS models (BasicSR's val_partition: REDS4).
REDS4 = ("000", "011", "015", "020")

_NET_ORIGINAL = {"nf": "num_feat", "nframes": "num_frame", "groups": "deformable_groups",
                 "front_RBs": "num_extract_block", "back_RBs": "num_reconstruct_block",
                 "center": "center_frame_idx", "predeblur": "with_predeblur", "HR_in": "hr_in", "w_TSA": "with_tsa"}
_NET_BASICSR = {k: k for k in ("num_feat", "num_frame", "deformable_groups", "num_extract_block",
                               "num_reconstruct_block", "center_frame_idx", "hr_in", "with_predeblur", "with_tsa")}


def detect(d: dict[str, Any]) -> str | None:
    """'original' (EDVR repository), 'basicsr', or None for our own schema."""
    if "network_G" in d:
        return "original"
    if "network_g" in d:
        return "basicsr"
    return None


def _int(v: Any) -> int:
    """Iteration counts are often written `!!float 5e3`."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


class _Mapper:
    def __init__(self, src: dict[str, Any]):
        self.src = src
        self.out: dict[str, Any] = {}
        self.used: set[str] = set()
        self.notes: list[str] = []

    def get(self, path: str) -> Any:
        node: Any = self.src
        for k in path.split("."):
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        self.used.add(path)
        return node

    def put(self, dst: str, value: Any) -> None:
        node = self.out
        *parents, last = dst.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value

    def move(self, path: str, dst: str, convert: Any = None) -> None:
        v = self.get(path)
        if v is not None:
            self.put(dst, convert(v) if convert else v)

    def ignored(self) -> list[str]:
        """Every leaf key of the source not consumed by a mapping."""
        out: list[str] = []

        def walk(node: Any, prefix: str) -> None:
            if prefix in self.used:
                return
            if isinstance(node, dict) and node:
                for k, v in node.items():
                    walk(v, f"{prefix}.{k}" if prefix else str(k))
            else:
                out.append(prefix)

        walk(self.src, "")
        return out


def _network(m: _Mapper, section: str, names: dict[str, str]) -> None:
    net = m.get(section) or {}
    kind = net.get("which_model_G", net.get("type"))
    if kind is not None and kind != "EDVR":
        raise ConfigError(f"{section} describes a {kind}, not an EDVR", hint="only EDVR option files are read")
    m.used.add(f"{section}.which_model_G")
    m.used.add(f"{section}.type")
    m.used.discard(section)
    for theirs, ours in names.items():
        m.move(f"{section}.{theirs}", f"model.{ours}")
    for ch in ("num_in_ch", "num_out_ch"):
        v = m.get(f"{section}.{ch}")
        if v is not None and v != 3:
            raise ConfigError(f"{section}.{ch}={v}: edvr_fast trains RGB models only (3 channels)")


def _refuse_gan(d: dict[str, Any], where: str) -> None:
    """Adversarial (GAN) option files: a discriminator, its optimiser or a GAN loss anywhere in the file."""
    train = d.get("train") if isinstance(d.get("train"), dict) else {}
    found = [k for k in ("network_d", "network_D") if k in d]
    found += [f"train.{k}" for k in ("optim_d", "gan_opt", "gan_type", "lr_d", "lr_D") if k in train]
    if "GAN" in str(d.get("model_type", "")) or "gan" in str(d.get("model", "")).lower():
        found.append(f"model_type={d.get('model_type', d.get('model'))}")
    if found:
        raise ConfigError(f"this option file trains a GAN ({', '.join(found)}): adversarial training is not "
                          "supported, and training it as plain Charbonnier restoration would not be what it "
                          "describes", where, "use a non-GAN EDVR option file (e.g. train_EDVR_M_x4_SR_REDS.yml)")


def _refuse_scheduler(kind: Any, key: str, where: str) -> None:
    raise ConfigError(f"{key}={kind!r}: this learning-rate schedule cannot be expressed here (supported: "
                      "CosineAnnealingRestartLR / CosineAnnealingLR_Restart, MultiStepLR, MultiStepRestartLR "
                      "without restarts)", where, "convert the file to our schema (schedule.kind cosine, "
                      "multistep or constant) and start it with --config")


def _multistep(m: _Mapper, milestones_key: str, gamma_key: str, restarts_key: str, kind: str, key: str,
               where: str) -> None:
    restarts = m.get(restarts_key)
    if restarts:
        raise ConfigError(f"{key}={kind!r} with {restarts_key}={restarts}: step decay with restarts cannot be "
                          "expressed here", where, "drop the restarts, or convert the file to our schema")
    m.get(restarts_key.rsplit(".", 1)[0] + ".restart_weights")  # weights of restarts there are none of
    milestones = m.get(milestones_key)
    if not milestones:
        raise ConfigError(f"{key}={kind!r} without {milestones_key}", where, "list the iterations to decay at")
    m.put("schedule.kind", "multistep")
    m.put("schedule.milestones", [_int(x) for x in milestones])
    gamma = m.get(gamma_key)
    m.put("schedule.gamma", 0.1 if gamma is None else gamma)  # PyTorch's / BasicSR's default gamma


def _cosine(m: _Mapper, periods_key: str, weights_key: str, prepend_first: bool) -> None:
    m.put("schedule.kind", "cosine")
    periods = m.get(periods_key)
    if periods is not None:
        m.put("schedule.periods", [_int(p) for p in periods])
    weights = m.get(weights_key)
    if weights is not None:
        # The original lists weights for the restarts only; the first period always has weight 1.
        w = ([1] if prepend_first else []) + list(weights)
        m.put("schedule.restart_weights", w[: len(periods)] if periods is not None else w)


def _lr_scheme(m: _Mapper, where: str) -> None:
    """train.lr_scheme (the original EDVR, and BasicSR before 1.0) with its keys beside it in train."""
    kind = m.get("train.lr_scheme")
    if kind is None:
        m.put("schedule.kind", "constant")
        m.notes.append("the file names no train.lr_scheme: a constant learning rate")
    elif kind == "CosineAnnealingLR_Restart":
        _cosine(m, "train.T_period", "train.restart_weights", prepend_first=True)
        m.get("train.restarts")  # implied by T_period
    elif kind in ("MultiStepLR", "MultiStepLR_Restart"):
        _multistep(m, "train.lr_steps", "train.lr_gamma", "train.restarts", kind, "train.lr_scheme", where)
    else:
        _refuse_scheduler(kind, "train.lr_scheme", where)


def _scheduler(m: _Mapper, where: str) -> None:
    """train.scheduler (BasicSR 1.x): type and its keys."""
    kind = m.get("train.scheduler.type")
    if kind == "CosineAnnealingRestartLR":
        _cosine(m, "train.scheduler.periods", "train.scheduler.restart_weights", prepend_first=False)
        m.move("train.scheduler.eta_min", "schedule.eta_min")
    elif kind in ("MultiStepLR", "MultiStepRestartLR"):
        _multistep(m, "train.scheduler.milestones", "train.scheduler.gamma", "train.scheduler.restarts", kind,
                   "train.scheduler.type", where)
    else:
        _refuse_scheduler(kind, "train.scheduler.type", where)


def _batch(m: _Mapper, key: str, gpus: Any, where: str) -> None:
    """A total batch size (the original EDVR, BasicSR before 1.0) over gpu_ids / num_gpu processes."""
    batch = m.get(key)
    if batch is None:
        return
    if isinstance(gpus, list) and gpus:
        n = len(gpus)
    elif isinstance(gpus, int) and not isinstance(gpus, bool):
        n = max(1, gpus)  # num_gpu: 0 is BasicSR's CPU mode, one process
    elif gpus is None:
        n = 1
    else:
        raise ConfigError(f"{key}={batch} is a total over the GPUs, but the GPU count is {gpus!r}", where,
                          "set num_gpu (or gpu_ids) to the number of GPUs the file was written for")
    m.put("loader.batch_size", max(1, batch // n))  # theirs is the total over all GPUs
    m.notes.append(f"{key}={batch} was the total over {n} GPU(s): per process {max(1, batch // n)}")


def _charbonnier_sum(m: _Mapper, key: str, where: str) -> None:
    crit = m.get(key)
    if crit is None:
        return
    if crit not in ("cb", "CharbonnierLoss"):
        raise ConfigError(f"{key}={crit!r}: only Charbonnier ('cb') is supported", where)
    # Their CharbonnierLoss: sum of sqrt(d^2 + 1e-6), i.e. our eps 1e-3 with sum reduction.
    m.put("loss.reduction", "sum")
    m.put("loss.eps", 1e-3)


def _numerics(m: _Mapper, ema: Any) -> None:
    """What the file describes and nothing else: no EMA unless it has one, no numerics-changing defaults."""
    from edvr_fast.config import TrainSection

    m.put("train.ema_decay", ema if ema else None)
    m.put("train.bf16", False)
    if "tf32" in {f.name for f in dataclasses.fields(TrainSection)}:
        m.put("train.tf32", False)


def convert(d: dict[str, Any], flavour: str, where: str = "config") -> tuple[dict[str, Any], list[str], list[str]]:
    """(our config dict, ignored keys, notes) for an original-EDVR or BasicSR option dict."""
    _refuse_gan(d, where)
    m = _Mapper(d)
    m.move("scale", "model.scale")
    m.move("manual_seed", "train.seed")
    m.move("train.manual_seed", "train.seed")
    tr_data = "datasets.train"
    m.move(f"{tr_data}.interval_list", "data.sample.interval_list")
    m.move(f"{tr_data}.random_reverse", "data.sample.random_reverse")
    m.move(f"{tr_data}.use_rot", "data.sample.use_rot")
    for key in ("dataroot_GT", "dataroot_LQ", "dataroot_gt", "dataroot_lq"):
        if m.get(f"{tr_data}.{key}") is not None:
            m.notes.append(f"{tr_data}.{key}: their LMDB layout is not ours; pack the clips with "
                           "`python -m edvr_fast.data.pack SRC DST` and set data.path=DST")
    for key in ("path.pretrain_model_G", "path.pretrain_model_g", "path.pretrain_network_g"):
        src = m.get(key)
        m.used.discard(key)  # still listed among the ignored keys
        if src:
            m.notes.append(f"{key}={src}: the file starts from those weights; this run starts from random "
                           "weights (no initialisation from a checkpoint here)")
    if m.get("train.perceptual_opt") is not None:
        raise ConfigError("train.perceptual_opt: only the Charbonnier pixel loss is supported", where)
    if flavour == "original":
        _network(m, "network_G", _NET_ORIGINAL)
        m.move(f"{tr_data}.N_frames", "data.sample.num_frame")
        m.move(f"{tr_data}.GT_size", "data.sample.gt_size")
        m.move(f"{tr_data}.use_flip", "data.sample.use_hflip")
        m.move(f"{tr_data}.n_workers", "loader.num_workers")
        _batch(m, f"{tr_data}.batch_size", m.get("gpu_ids"), where)
        m.move("train.lr_G", "optim.lr")
        b1, b2 = m.get("train.beta1"), m.get("train.beta2")
        if b1 is not None or b2 is not None:
            m.put("optim.betas", [0.9 if b1 is None else b1, 0.999 if b2 is None else b2])
        m.move("train.weight_decay_G", "optim.weight_decay")
        m.move("train.niter", "train.iters", _int)
        _lr_scheme(m, where)
        m.move("train.ft_tsa_only", "schedule.tsa_iters", _int)
        _charbonnier_sum(m, "train.pixel_criterion", where)
        m.move("train.val_freq", "val.every", _int)
        m.move("logger.print_freq", "log.every", _int)
        m.move("logger.save_checkpoint_freq", "checkpoint.every", _int)
        tb = m.get("use_tb_logger")
        if tb is not None:
            m.put("log.tensorboard", "auto" if tb else "off")
        _numerics(m, None)  # the original EDVR never trains with an EMA
    else:
        _network(m, "network_g", _NET_BASICSR)
        if m.get("network_g.ema_decay") is not None:
            m.notes.append("network_g.ema_decay is not where BasicSR reads the EMA (train.ema_decay): no EMA")
        m.move(f"{tr_data}.num_frame", "data.sample.num_frame")
        m.move(f"{tr_data}.gt_size", "data.sample.gt_size")
        m.move(f"{tr_data}.use_hflip", "data.sample.use_hflip")
        m.move(f"{tr_data}.use_flip", "data.sample.use_hflip")
        m.move(f"{tr_data}.batch_size_per_gpu", "loader.batch_size")
        m.move(f"{tr_data}.num_worker_per_gpu", "loader.num_workers")
        # BasicSR before 1.0: a total batch_size over gpu_ids / num_gpu, num_worker per GPU, train.niter.
        gpus = m.get("gpu_ids")
        _batch(m, f"{tr_data}.batch_size", gpus if gpus is not None else m.get("num_gpu"), where)
        m.get("num_gpu")  # the process count comes from torchrun, not the file
        m.move(f"{tr_data}.num_worker", "loader.num_workers")
        part = m.get(f"{tr_data}.val_partition")
        if part == "REDS4":
            m.put("data.val_clips", list(REDS4))
        elif part is not None:
            m.notes.append(f"{tr_data}.val_partition={part!r}: set data.val_clips to the validation clip names")
        opt_type = m.get("train.optim_g.type")
        if opt_type not in (None, "Adam"):
            raise ConfigError(f"train.optim_g.type={opt_type!r}: edvr_fast trains with Adam only", where)
        m.move("train.optim_g.lr", "optim.lr")
        m.move("train.optim_g.betas", "optim.betas")
        m.move("train.optim_g.weight_decay", "optim.weight_decay")
        m.move("train.lr_g", "optim.lr")  # before 1.0
        m.move("train.beta_g", "optim.betas")
        m.move("train.weight_decay_g", "optim.weight_decay")
        if m.get("train.scheduler") is not None:
            m.used.discard("train.scheduler")
            _scheduler(m, where)
        else:
            _lr_scheme(m, where)
        m.move("train.total_iter", "train.iters", _int)
        m.move("train.niter", "train.iters", _int)
        m.move("train.tsa_iter", "schedule.tsa_iters", _int)
        m.move("train.dcn_lr_mul", "optim.dcn_lr_mult")
        _numerics(m, m.get("train.ema_decay"))
        _charbonnier_sum(m, "train.pixel_criterion", where)
        pix = m.get("train.pixel_opt") or {}
        if pix:
            if pix.get("type") != "CharbonnierLoss":
                raise ConfigError(f"train.pixel_opt.type={pix.get('type')!r}: only CharbonnierLoss is supported",
                                  where)
            m.used.discard("train.pixel_opt")
            m.get("train.pixel_opt.type")
            m.move("train.pixel_opt.reduction", "loss.reduction")
            eps = m.get("train.pixel_opt.eps")
            # BasicSR adds eps inside the square root (sqrt(d^2 + eps)); ours squares it.
            m.put("loss.eps", math.sqrt(eps) if eps is not None else 1e-6)
            if m.get("train.pixel_opt.loss_weight") not in (None, 1, 1.0):
                m.notes.append("train.pixel_opt.loss_weight is ignored (Adam is invariant to a constant scale)")
        m.move("val.val_freq", "val.every", _int)
        m.move("train.val_freq", "val.every", _int)  # before 1.0
        for metric in ("psnr", "ssim"):
            m.move(f"val.metrics.{metric}.crop_border", "val.crop_border")
            m.move(f"val.metrics.{metric}.test_y_channel", "val.y_channel")
            m.get(f"val.metrics.{metric}.type")
        m.move("logger.print_freq", "log.every", _int)
        m.move("logger.save_checkpoint_freq", "checkpoint.every", _int)
        tb = m.get("logger.use_tb_logger")
        if tb is None:
            tb = m.get("use_tb_logger")
        if tb is not None:
            m.put("log.tensorboard", "auto" if tb else "off")
    if "iters" not in m.out.get("train", {}):
        m.notes.append("the file gives no iteration count (total_iter / niter): train.iters keeps its default")
    warm = m.get("train.warmup_iter")
    if warm is not None and warm > 0:
        m.put("schedule.warmup_iters", _int(warm))
    sample = m.out.get("data", {}).get("sample", {})
    if "num_frame" in sample and "num_frame" not in m.out.get("model", {}):
        m.put("model.num_frame", sample["num_frame"])
    if "eta_min" not in m.out.get("schedule", {}):
        m.move("train.eta_min", "schedule.eta_min")
    return m.out, m.ignored(), m.notes
