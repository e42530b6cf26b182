"""Reading option files of the original EDVR (`network_G`) and of BasicSR (`network_g`), `train_EDVR_*.yml`:
their keys mapped onto our schema, and the list of keys we ignored (with why, where it matters).
"""

from __future__ import annotations

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


def _schedule(m: _Mapper, periods_key: str, weights_key: str, prepend_first: bool) -> None:
    m.put("schedule.kind", "cosine")  # both projects train EDVR with cosine annealing and restarts
    periods = m.get(periods_key)
    if periods is not None:
        m.put("schedule.periods", [_int(p) for p in periods])
    weights = m.get(weights_key)
    if weights is not None:
        # The original lists weights for the restarts only; the first period always has weight 1.
        w = ([1] if prepend_first else []) + list(weights)
        m.put("schedule.restart_weights", w[: len(periods)] if periods is not None else w)


def convert(d: dict[str, Any], flavour: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """(our config dict, ignored keys, notes) for an original-EDVR or BasicSR option dict."""
    m = _Mapper(d)
    m.move("scale", "model.scale")
    m.move("manual_seed", "train.seed")
    tr_data = "datasets.train"
    m.move(f"{tr_data}.interval_list", "data.sample.interval_list")
    m.move(f"{tr_data}.random_reverse", "data.sample.random_reverse")
    m.move(f"{tr_data}.use_rot", "data.sample.use_rot")
    for key in ("dataroot_GT", "dataroot_LQ", "dataroot_gt", "dataroot_lq"):
        if m.get(f"{tr_data}.{key}") is not None:
            m.notes.append(f"{tr_data}.{key}: their LMDB layout is not ours; pack the clips with "
                           "`python -m edvr_fast.data.pack SRC DST` and set data.path=DST")
    if flavour == "original":
        _network(m, "network_G", _NET_ORIGINAL)
        m.move(f"{tr_data}.N_frames", "data.sample.num_frame")
        m.move(f"{tr_data}.GT_size", "data.sample.gt_size")
        m.move(f"{tr_data}.use_flip", "data.sample.use_hflip")
        m.move(f"{tr_data}.n_workers", "loader.num_workers")
        batch, gpus = m.get(f"{tr_data}.batch_size"), m.get("gpu_ids")
        if batch is not None:
            n = len(gpus) if isinstance(gpus, list) and gpus else 1
            m.put("loader.batch_size", max(1, batch // n))  # theirs is the total over all GPUs
            m.notes.append(f"{tr_data}.batch_size={batch} was the total over {n} GPU(s): per process "
                           f"{max(1, batch // n)}")
        m.move("train.lr_G", "optim.lr")
        b1, b2 = m.get("train.beta1"), m.get("train.beta2")
        if b1 is not None or b2 is not None:
            m.put("optim.betas", [0.9 if b1 is None else b1, 0.999 if b2 is None else b2])
        m.move("train.weight_decay_G", "optim.weight_decay")
        m.move("train.niter", "train.iters", _int)
        _schedule(m, "train.T_period", "train.restart_weights", prepend_first=True)
        m.get("train.restarts")  # implied by T_period
        m.get("train.lr_scheme")
        m.move("train.ft_tsa_only", "schedule.tsa_iters", _int)
        crit = m.get("train.pixel_criterion")
        if crit is not None:
            if crit != "cb":
                raise ConfigError(f"train.pixel_criterion={crit!r}: only Charbonnier ('cb') is supported")
            # Their CharbonnierLoss: sum of sqrt(d^2 + 1e-6), i.e. our eps 1e-3 with sum reduction.
            m.put("loss.reduction", "sum")
            m.put("loss.eps", 1e-3)
        m.move("train.val_freq", "val.every", _int)
        m.move("logger.print_freq", "log.every", _int)
        m.move("logger.save_checkpoint_freq", "checkpoint.every", _int)
        tb = m.get("use_tb_logger")
        if tb is not None:
            m.put("log.tensorboard", "auto" if tb else "off")
    else:
        _network(m, "network_g", _NET_BASICSR)
        m.move(f"{tr_data}.num_frame", "data.sample.num_frame")
        m.move(f"{tr_data}.gt_size", "data.sample.gt_size")
        m.move(f"{tr_data}.use_hflip", "data.sample.use_hflip")
        m.move(f"{tr_data}.use_flip", "data.sample.use_hflip")
        m.move(f"{tr_data}.batch_size_per_gpu", "loader.batch_size")
        m.move(f"{tr_data}.num_worker_per_gpu", "loader.num_workers")
        part = m.get(f"{tr_data}.val_partition")
        if part == "REDS4":
            m.put("data.val_clips", list(REDS4))
        elif part is not None:
            m.notes.append(f"{tr_data}.val_partition={part!r}: set data.val_clips to the validation clip names")
        opt_type = m.get("train.optim_g.type")
        if opt_type not in (None, "Adam"):
            raise ConfigError(f"train.optim_g.type={opt_type!r}: edvr_fast trains with Adam only")
        m.move("train.optim_g.lr", "optim.lr")
        m.move("train.optim_g.betas", "optim.betas")
        m.move("train.optim_g.weight_decay", "optim.weight_decay")
        m.get("train.scheduler.type")
        _schedule(m, "train.scheduler.periods", "train.scheduler.restart_weights", prepend_first=False)
        m.move("train.scheduler.eta_min", "schedule.eta_min")
        m.move("train.total_iter", "train.iters", _int)
        m.move("train.tsa_iter", "schedule.tsa_iters", _int)
        m.move("train.dcn_lr_mul", "optim.dcn_lr_mult")
        ema = m.get("train.ema_decay")
        if ema:
            m.put("train.ema_decay", ema)
        pix = m.get("train.pixel_opt") or {}
        if pix:
            if pix.get("type") != "CharbonnierLoss":
                raise ConfigError(f"train.pixel_opt.type={pix.get('type')!r}: only CharbonnierLoss is supported")
            m.used.discard("train.pixel_opt")
            m.get("train.pixel_opt.type")
            m.move("train.pixel_opt.reduction", "loss.reduction")
            eps = m.get("train.pixel_opt.eps")
            # BasicSR adds eps inside the square root (sqrt(d^2 + eps)); ours squares it.
            m.put("loss.eps", math.sqrt(eps) if eps is not None else 1e-6)
            if m.get("train.pixel_opt.loss_weight") not in (None, 1, 1.0):
                m.notes.append("train.pixel_opt.loss_weight is ignored (Adam is invariant to a constant scale)")
        m.move("val.val_freq", "val.every", _int)
        for metric in ("psnr", "ssim"):
            m.move(f"val.metrics.{metric}.crop_border", "val.crop_border")
            m.move(f"val.metrics.{metric}.test_y_channel", "val.y_channel")
            m.get(f"val.metrics.{metric}.type")
        m.move("logger.print_freq", "log.every", _int)
        m.move("logger.save_checkpoint_freq", "checkpoint.every", _int)
        tb = m.get("logger.use_tb_logger")
        if tb is not None:
            m.put("log.tensorboard", "auto" if tb else "off")
    warm = m.get("train.warmup_iter")
    if warm is not None and warm > 0:
        m.put("schedule.warmup_iters", _int(warm))
    sample = m.out.get("data", {}).get("sample", {})
    if "num_frame" in sample and "num_frame" not in m.out.get("model", {}):
        m.put("model.num_frame", sample["num_frame"])
    if "eta_min" not in m.out.get("schedule", {}):
        m.move("train.eta_min", "schedule.eta_min")
    return m.out, m.ignored(), m.notes
