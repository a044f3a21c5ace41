"""Training configuration: recipes, their resolution against flags, and the world size.

A recipe fills every field; a flag the user gave overrides its recipe value; `resolve` returns
the complete configuration that the run stores in `config.json`, so a run can be repeated.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

from hrnet_fast.errors import UserError
from hrnet_fast.host import default_workers


@dataclass
class TrainConfig:
    shards: str = "./shards"
    num_samples: Optional[int] = None
    val_shards: Optional[str] = None
    val_num_samples: Optional[int] = None
    model: str = "hrnet_w18"
    num_classes: Optional[int] = None     # None: from the manifest
    recipe: str = "reference"
    epochs: int = 100
    batch_size: int = 128                 # per device
    lr: Optional[float] = None            # None: recipe's rule (scaled by the global batch)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    no_wd_norm_bias: bool = False
    schedule: str = "step"                # step | cosine
    milestones: list[int] = field(default_factory=lambda: [30, 60, 90])
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    precision: Optional[str] = None       # None: the device's default
    loss_scale: Optional[float] = None    # None: dynamic
    image_size: int = 224
    crop_scale_min: float = 0.08          # RandomResizedCrop's smallest area fraction
    hflip: bool = True
    val_image_size: Optional[int] = None
    workers: Optional[int] = None         # None: default_workers()
    shuffle_buffer: int = 4096
    seed: int = 0
    stop_step: Optional[int] = None
    log_interval: int = 20
    val_every: int = 1
    precise_bn: int = 0                   # batches to recompute BN statistics before validation (0: off)
    ckpt_minutes: float = 30.0
    max_bad_steps: int = 50
    sync_bn: bool = False
    compile: bool = False
    align_channels: str = "auto"          # 8 | 16 | off | auto (8 on CUDA, 16 on NPU, off on CPU)
    graph: bool = False
    device: str = "auto"
    out: str = "runs/hrnet"
    resume: Optional[str] = None
    tensorboard: bool = False
    # filled by resolve()
    world_size: int = 1
    global_batch: int = 0
    base_lr: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# The recipe's values; `lr_per_128` (reference, cosine) or `lr_per_device` (ascend) sets the lr rule.
RECIPES: dict[str, dict[str, Any]] = {
    # HRNet-Image-Classification: SGD nesterov 0.9, wd 1e-4, lr 0.05 at batch 128, ×0.1 at 30/60/90 of 100.
    "reference": dict(epochs=100, batch_size=128, schedule="step", milestones=[30, 60, 90], gamma=0.1,
                      weight_decay=1e-4, nesterov=True, lr_per_128=0.05),
    # Ascend ModelZoo port: 256 per device, lr 0.1 × world size, O2 with static loss scale 128.
    "ascend": dict(epochs=100, batch_size=256, schedule="step", milestones=[30, 60, 90], gamma=0.1,
                   weight_decay=1e-4, nesterov=True, lr_per_device=0.1),
    # Modern schedule: 5 warm-up epochs, cosine decay, label smoothing 0.1, no decay on BN and bias.
    "cosine": dict(epochs=100, batch_size=128, schedule="cosine", warmup_epochs=5, label_smoothing=0.1,
                   no_wd_norm_bias=True, weight_decay=1e-4, nesterov=True, lr_per_128=0.05),
}


# Not taken from a resumed run: where and how this process runs, not what the run computes.
RUN_LOCAL = ("out", "resume", "stop_step", "device", "compile", "graph", "tensorboard",
             "world_size", "global_batch", "base_lr")


def inherit(overrides: dict[str, Any], saved: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resume: settings the command line leaves unset (None) come from the run's saved config, so
    `--resume auto` continues the same recipe, batch, precision and loader layout (the loader's
    position depends on --workers) without repeating every flag. Another --recipe brings its own
    values instead of the run's. Returns the merged overrides and the run's values that differ
    from what this command line alone would give (what the user should hear about)."""
    known = {f.name for f in fields(TrainConfig)} - set(RUN_LOCAL)
    if overrides.get("recipe") not in (None, saved.get("recipe")):  # a new recipe brings its own values
        known -= {key for recipe in RECIPES.values() for key in recipe}
    taken = {k: v for k, v in saved.items() if k in known and overrides.get(k) is None and v is not None}
    alone = resolve(overrides, world_size=1).to_json()
    return {**overrides, **taken}, {k: v for k, v in taken.items() if alone.get(k) != v}


def resolve(overrides: dict[str, Any], world_size: int) -> TrainConfig:
    """Recipe values, then the user's flags (those not None), then derived fields."""
    recipe_name = overrides.get("recipe") or "reference"
    if recipe_name not in RECIPES:
        raise UserError(f"unknown recipe {recipe_name!r}: choose one of {', '.join(RECIPES)}")
    recipe = dict(RECIPES[recipe_name])
    lr_per_128 = recipe.pop("lr_per_128", None)
    lr_per_device = recipe.pop("lr_per_device", None)
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(sorted(unknown))}")
    values = {**recipe, **{k: v for k, v in overrides.items() if v is not None}, "recipe": recipe_name}
    cfg = TrainConfig(**values)
    if cfg.workers is None:
        cfg.workers = default_workers()
    cfg.world_size = world_size
    cfg.global_batch = cfg.batch_size * world_size
    if cfg.lr is not None:
        cfg.base_lr = cfg.lr
    elif lr_per_device is not None:
        cfg.base_lr = lr_per_device * world_size
    else:
        cfg.base_lr = lr_per_128 * cfg.global_batch / 128
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    checks = [
        (cfg.epochs >= 1, "--epochs must be at least 1"),
        (cfg.batch_size >= 1, "--batch-size must be at least 1"),
        (cfg.image_size >= 32, "--image-size must be at least 32 (HRNet downsamples 32×)"),
        (cfg.base_lr > 0, "--lr must be positive"),
        (cfg.schedule in ("step", "cosine"), "schedule must be step or cosine"),
        (cfg.workers >= 0, "--workers must be 0 or more"),
        (cfg.precise_bn >= 0, "--precise-bn must be 0 (off) or a number of batches"),
        (cfg.stop_step is None or cfg.stop_step >= 1, "--stop-step must be at least 1"),
        (cfg.align_channels in ("off", "8", "16", "auto"), "--align-channels must be 8, 16 or off"),
        (not (cfg.graph and cfg.sync_bn and cfg.world_size > 1),
         "--graph and --sync-bn do not combine (SyncBatchNorm communicates inside the forward): drop one of them"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
