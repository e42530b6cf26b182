"""Option files of the original EDVR and of BasicSR are mapped onto our schema; unmapped keys are reported."""

from __future__ import annotations

import pytest

from edvr_fast.errors import ConfigError
from edvr_fast.train.__main__ import build_config

ORIGINAL = """
name: 001_EDVRwoTSA_scratch_lr4e-4_600k_REDS_LrCAR4S
use_tb_logger: true
model: video_base
distortion: sr
scale: 4
gpu_ids: [0, 1, 2, 3, 4, 5, 6, 7]
datasets:
  train:
    name: REDS
    mode: REDS
    interval_list: [1]
    random_reverse: false
    border_mode: false
    dataroot_GT: ../datasets/REDS/train_sharp_wval.lmdb
    dataroot_LQ: ../datasets/REDS/train_sharp_bicubic_wval.lmdb
    cache_keys: ~
    N_frames: 5
    use_shuffle: true
    n_workers: 3
    batch_size: 32
    GT_size: 256
    LQ_size: 64
    use_flip: true
    use_rot: true
    color: RGB
network_G:
  which_model_G: EDVR
  nf: 64
  nframes: 5
  groups: 8
  front_RBs: 5
  back_RBs: 10
  predeblur: false
  HR_in: false
  w_TSA: false
path:
  pretrain_model_G: ~
  strict_load: true
  resume_state: ~
train:
  lr_G: !!float 4e-4
  lr_scheme: CosineAnnealingLR_Restart
  beta1: 0.9
  beta2: 0.99
  niter: 600000
  warmup_iter: -1
  T_period: [150000, 150000, 150000, 150000]
  restarts: [150000, 300000, 450000]
  restart_weights: [1, 1, 1]
  eta_min: !!float 1e-7
  pixel_criterion: cb
  pixel_weight: 1.0
  val_freq: !!float 5e3
  manual_seed: 0
logger:
  print_freq: 100
  save_checkpoint_freq: !!float 5e3
"""

BASICSR = """
name: EDVR_M_x4_SR_REDS_woTSA_600k_B4G8_valREDS4
model_type: EDVRModel
scale: 4
num_gpu: 8
manual_seed: 0
datasets:
  train:
    name: REDS
    type: REDSDataset
    dataroot_gt: datasets/REDS/train_sharp_with_val.lmdb
    dataroot_lq: datasets/REDS/train_sharp_bicubic_with_val.lmdb
    dataroot_flow: ~
    meta_info_file: basicsr/data/meta_info/meta_info_REDS_GT.txt
    val_partition: REDS4
    io_backend:
      type: lmdb
    num_frame: 5
    gt_size: 256
    interval_list: [1]
    random_reverse: false
    use_hflip: true
    use_rot: true
    use_shuffle: true
    num_worker_per_gpu: 3
    batch_size_per_gpu: 4
    dataset_enlarge_ratio: 200
    prefetch_mode: ~
network_g:
  type: EDVR
  num_in_ch: 3
  num_out_ch: 3
  num_feat: 64
  num_frame: 5
  deformable_groups: 8
  num_extract_block: 5
  num_reconstruct_block: 10
  center_frame_idx: ~
  hr_in: false
  with_predeblur: false
  with_tsa: true
path:
  pretrain_network_g: ~
  strict_load_g: true
  resume_state: ~
train:
  ema_decay: 0.999
  optim_g:
    type: Adam
    lr: !!float 4e-4
    weight_decay: 0
    betas: [0.9, 0.99]
  scheduler:
    type: CosineAnnealingRestartLR
    periods: [50000, 100000, 150000, 150000, 150000]
    restart_weights: [1, 0.5, 0.5, 0.5, 0.5]
    eta_min: !!float 1e-7
  total_iter: 600000
  warmup_iter: -1
  tsa_iter: 50000
  dcn_lr_mul: 1
  pixel_opt:
    type: CharbonnierLoss
    loss_weight: 1.0
    reduction: sum
val:
  val_freq: !!float 5e3
  save_img: false
  metrics:
    psnr:
      type: calculate_psnr
      crop_border: 0
      test_y_channel: false
logger:
  print_freq: 100
  save_checkpoint_freq: !!float 5e3
  use_tb_logger: true
dist_params:
  backend: nccl
  port: 29500
"""


def _load(tmp_path, text, *sets):
    f = tmp_path / "train_EDVR.yml"
    f.write_text(text)
    said = []
    return build_config(str(f), list(sets), say=said.append), "\n".join(said)


def test_original_edvr_options(tmp_path):
    cfg, said = _load(tmp_path, ORIGINAL)
    m = cfg.model
    assert (m.num_feat, m.num_frame, m.deformable_groups, m.num_extract_block, m.num_reconstruct_block) == (
        64, 5, 8, 5, 10)
    assert m.with_tsa is False and m.scale == 4 and m.hr_in is False
    assert cfg.loader.batch_size == 4 and cfg.loader.num_workers == 3  # 32 over 8 GPUs
    assert cfg.optim.lr == 4e-4 and cfg.optim.betas == (0.9, 0.99)
    assert cfg.train.iters == 600000 and cfg.schedule.periods == (150000,) * 4
    assert cfg.schedule.restart_weights == (1, 1, 1, 1) and cfg.schedule.eta_min == 1e-7
    assert cfg.loss.reduction == "sum" and cfg.val.every == 5000 and cfg.checkpoint.every == 5000
    assert cfg.data.sample.gt_size == 256 and cfg.data.sample.num_frame == 5
    assert "original EDVR" in said
    for key in ("datasets.train.LQ_size", "datasets.train.border_mode", "path.pretrain_model_G", "model",
                "name", "train.pixel_weight"):
        assert key in said
    assert "network_G.nf" not in said and "train.lr_G" not in said
    assert "edvr_fast.data.pack" in said  # the dataroot note


def test_basicsr_options(tmp_path):
    cfg, said = _load(tmp_path, BASICSR, "train.iters=10")
    assert cfg.model.with_tsa is True and cfg.model.num_feat == 64
    assert cfg.loader.batch_size == 4 and cfg.train.ema_decay == 0.999
    assert cfg.schedule.periods == (50000, 100000, 150000, 150000, 150000)
    assert cfg.schedule.restart_weights == (1, 0.5, 0.5, 0.5, 0.5) and cfg.schedule.tsa_iters == 50000
    assert cfg.loss.reduction == "sum" and cfg.loss.eps == pytest.approx(1e-6)
    assert cfg.data.val_clips == ("000", "011", "015", "020")
    assert cfg.train.iters == 10  # --set wins over the file
    assert "BasicSR" in said
    for key in ("dist_params.backend", "datasets.train.dataset_enlarge_ratio", "val.save_img", "model_type"):
        assert key in said
    assert "network_g.num_feat" not in said and "train.optim_g.lr" not in said


def test_foreign_values_still_checked(tmp_path):
    with pytest.raises(ConfigError, match="only CharbonnierLoss"):
        _load(tmp_path, BASICSR.replace("type: CharbonnierLoss", "type: L1Loss"))
    with pytest.raises(ConfigError, match="deformable_groups"):
        _load(tmp_path, ORIGINAL.replace("groups: 8", "groups: 7"))


# BasicSR's step-decay layout (1.x): scheduler type MultiStepLR with milestones and gamma.
BASICSR_STEPS = BASICSR.replace("""  scheduler:
    type: CosineAnnealingRestartLR
    periods: [50000, 100000, 150000, 150000, 150000]
    restart_weights: [1, 0.5, 0.5, 0.5, 0.5]
    eta_min: !!float 1e-7
""", """  scheduler:
    type: MultiStepLR
    milestones: [100000, 200000, 300000]
    gamma: 0.5
""").replace("  warmup_iter: -1\n", "  warmup_iter: 2000\n")

# Adversarial fine-tuning in BasicSR's pre-1.0 layout (a discriminator, its lr, a GAN loss weight).
BASICSR_GAN = """
name: 900_EDVRM_woTSA_adversarial_REDS
model_type: VideoGANModel
scale: 4
num_gpu: 8
datasets:
  train:
    name: REDS
    type: REDSDataset
    num_frame: 5
    gt_size: 256
    num_worker: 3
    batch_size: 32
network_g:
  type: EDVR
  num_feat: 64
  num_frame: 5
  deformable_groups: 8
  num_extract_block: 5
  num_reconstruct_block: 10
  with_tsa: false
network_d:
  type: VGGStyleDiscriminator256
  num_in_ch: 3
  num_feat: 64
train:
  lr_g: !!float 1e-4
  lr_d: !!float 1e-4
  lr_scheme: MultiStepLR
  niter: 400000
  lr_steps: [50000, 100000]
  lr_gamma: 0.5
  gan_type: vanilla
  gan_weight: !!float 5e-3
"""

# BasicSR before 1.0: total batch over gpu_ids, num_worker per GPU, niter, manual_seed under train.
BASICSR_OLD = """
name: 555_EDVR_M_older_layout
model_type: VideoBaseModel
scale: 4
gpu_ids: [0, 1, 2, 3]
datasets:
  train:
    name: REDS
    type: REDSDataset
    val_partition: REDS4
    num_frame: 5
    gt_size: 128
    use_flip: true
    use_rot: false
    num_worker: 2
    batch_size: 16
network_g:
  type: EDVR
  num_in_ch: 3
  num_out_ch: 3
  num_feat: 64
  num_frame: 5
  deformable_groups: 8
  num_extract_block: 5
  num_reconstruct_block: 10
  with_tsa: true
train:
  optim_g:
    type: Adam
    lr: !!float 2e-4
    betas: [0.9, 0.99]
  scheduler:
    type: CosineAnnealingRestartLR
    periods: [100000, 100000, 100000]
    restart_weights: [1, 1, 1]
    eta_min: !!float 1e-7
  niter: 300000
  warmup_iter: -1
  pixel_opt:
    type: CharbonnierLoss
    loss_weight: 1.0
    reduction: sum
  manual_seed: 10
"""


def test_basicsr_multistep_is_a_step_schedule(tmp_path):
    cfg, said = _load(tmp_path, BASICSR_STEPS)
    sc = cfg.schedule
    assert sc.kind == "multistep" and sc.milestones == (100000, 200000, 300000) and sc.gamma == 0.5
    assert sc.warmup_iters == 2000 and cfg.train.iters == 600000
    assert "milestones" not in said and "gamma" not in said  # mapped, not ignored
    from edvr_fast.train.schedules import MultiStep, build

    s = build(cfg)
    assert isinstance(s, MultiStep)
    assert s.lr(150000) == pytest.approx(2e-4) and s.lr(350000) == pytest.approx(4e-4 / 8)


def test_original_multistep_and_unknown_schedulers(tmp_path):
    steps = ORIGINAL.replace("lr_scheme: CosineAnnealingLR_Restart", "lr_scheme: MultiStepLR").replace(
        "  restarts: [150000, 300000, 450000]\n", "  lr_steps: [200000, 400000]\n  lr_gamma: 0.1\n")
    cfg, _ = _load(tmp_path, steps)
    assert cfg.schedule.kind == "multistep" and cfg.schedule.milestones == (200000, 400000)
    assert cfg.schedule.gamma == 0.1
    with pytest.raises(ConfigError, match="CosineAnnealingRestartCyclicLR.*cannot be expressed"):
        _load(tmp_path, BASICSR.replace("CosineAnnealingRestartLR", "CosineAnnealingRestartCyclicLR"))
    with pytest.raises(ConfigError, match="'Poly'"):
        _load(tmp_path, ORIGINAL.replace("CosineAnnealingLR_Restart", "Poly"))
    with pytest.raises(ConfigError, match="restarts"):  # step decay with restarts: refused, not flattened
        _load(tmp_path, ORIGINAL.replace("CosineAnnealingLR_Restart", "MultiStepLR_Restart").replace(
            "  T_period:", "  lr_steps: [100000]\n  T_period:"))


def test_gan_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="trains a GAN.*network_d.*adversarial training is not supported"):
        _load(tmp_path, BASICSR_GAN)
    for section in ("  optim_d:\n    type: Adam\n    lr: 1e-4\n", "  gan_opt:\n    type: GANLoss\n"):
        text = BASICSR.replace("  dcn_lr_mul: 1\n", "  dcn_lr_mul: 1\n" + section)
        with pytest.raises(ConfigError, match=rf"train\.{section.split(':')[0].strip()}"):
            _load(tmp_path, text)


def test_ema_only_when_the_file_asks(tmp_path):
    cfg, _ = _load(tmp_path, ORIGINAL)
    assert cfg.train.ema_decay is None and cfg.train.bf16 is False
    cfg, _ = _load(tmp_path, BASICSR.replace("  ema_decay: 0.999\n", ""))
    assert cfg.train.ema_decay is None
    misplaced = BASICSR.replace("  ema_decay: 0.999\n", "").replace("  with_tsa: true\n",
                                                                    "  with_tsa: true\n  ema_decay: 0.999\n")
    cfg, said = _load(tmp_path, misplaced)
    assert cfg.train.ema_decay is None and "network_g.ema_decay" in said and "no EMA" in said
    cfg, _ = _load(tmp_path, BASICSR)
    assert cfg.train.ema_decay == 0.999


def test_imported_files_keep_their_numerics_under_demo_like_overrides(tmp_path):
    # An option file is a user run: none of the demo run's settings (lr 2e-3, 32 px crops, EMA) reach it.
    cfg, _ = _load(tmp_path, BASICSR.replace("  ema_decay: 0.999\n", "").replace("    gt_size: 256\n", ""))
    assert cfg.optim.lr == 4e-4 and cfg.data.sample.gt_size == 256 and cfg.train.ema_decay is None
    assert cfg.model.num_feat == 64 and cfg.schedule.kind == "cosine"


def test_pre_1_0_basicsr_keys(tmp_path):
    cfg, said = _load(tmp_path, BASICSR_OLD)
    assert cfg.train.iters == 300000 and cfg.loader.batch_size == 4  # 16 over 4 GPUs
    assert cfg.loader.num_workers == 2 and cfg.train.seed == 10
    assert cfg.data.sample.gt_size == 128 and cfg.data.sample.use_rot is False
    assert "total over 4 GPU(s)" in said and "train.niter" not in said
    cfg, said = _load(tmp_path, BASICSR_OLD.replace("gpu_ids: [0, 1, 2, 3]", "num_gpu: 8"))
    assert cfg.loader.batch_size == 2
    with pytest.raises(ConfigError, match="total over the GPUs.*'auto'"):
        _load(tmp_path, BASICSR_OLD.replace("gpu_ids: [0, 1, 2, 3]", "num_gpu: auto"))


def test_pretrained_initialisation_is_said(tmp_path):
    text = ORIGINAL.replace("  pretrain_model_G: ~", "  pretrain_model_G: ../experiments/woTSA/600000_G.pth")
    _, said = _load(tmp_path, text)
    assert "pretrain_model_G=../experiments/woTSA/600000_G.pth" in said and "random weights" in said
