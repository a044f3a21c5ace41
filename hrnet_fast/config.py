"""Training configuration: recipes, their resolution against flags, and the world size.

A recipe fills every field; a flag the user gave overrides its recipe value; `resolve` returns
the complete, frozen configuration that the run stores in `config.json`, so a run can be repeated.
What only the machine and the data know (the device's precision, the worker count the ranks
agree on, the manifest's class count) is passed into `resolve`, never patched in afterwards.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from hrnet_fast.errors import UserError
from hrnet_fast.host import default_workers
from hrnet_fast.resolution import parse_res
from hrnet_fast.schedule import SCHEDULES

T = TypeVar("T")


@dataclass(frozen=True)
class TrainConfig:
    shards: str = "./shards"
    num_samples: int | None = None
    val_shards: str | None = None
    val_num_samples: int | None = None
    model: str = "hrnet_w18"
    num_classes: int | None = None     # None: the manifest's class count
    recipe: str = "reference"
    epochs: int = 100
    batch_size: int = 128                 # per device
    lr: float | None = None            # None: recipe's rule (scaled by the global batch)
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    no_wd_norm_bias: bool = False
    schedule: str = "step"                # one of schedule.SCHEDULES
    milestones: list[int] = field(default_factory=lambda: [30, 60, 90])
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0                    # Mixup's Beta(A, A) (0: off); see hrnet_fast.mix
    cutmix: float = 0.0                   # CutMix's Beta(A, A) (0: off)
    mix_prob: float = 1.0                 # share of batches mixed
    mix_switch_prob: float = 0.5          # share of mixed batches that use CutMix when both are on
    ema_decay: float = 0.0                # EMA of the weights, decay per step (0: off); see hrnet_fast.ema
    precision: str | None = None       # None: the device's default
    loss_scale: float | None = None    # None: dynamic
    image_size: int = 224                 # train crop size without --res; the val size's fallback
    res: str | None = None                # progressive resizing, START:END[:FROM_EPOCH:TO_EPOCH] (see resolution)
    crop_scale_min: float = 0.08          # RandomResizedCrop's smallest area fraction
    hflip: bool = True
    val_image_size: int | None = None
    workers: int | None = None         # None: default_workers()
    shuffle_buffer: int = 4096
    seed: int = 0
    stop_step: int | None = None
    log_interval: int = 20
    val_every: int = 1
    precise_bn: int = 0                   # batches to recompute BN statistics before validation (0: off)
    ckpt_minutes: float = 30.0
    max_bad_steps: int = 50
    sync_bn: bool = False
    compile: bool = False
    align_channels: str = "auto"          # one of ALIGN_CHOICES (auto: the device's DEFAULT_CHANNEL_ALIGN)
    graph: bool = False
    device: str = "auto"
    out: str = "runs/hrnet"
    resume: str | None = None
    tensorboard: bool = False
    # filled by resolve()
    world_size: int = 1
    global_batch: int = 0
    base_lr: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The form `config.json` and checkpoints store, and `--config` / `--resume` read back."""
        return asdict(self)


ALIGN_CHOICES = ("8", "16", "off", "auto")
SETTINGS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig))
DEFAULTS: dict[str, Any] = TrainConfig().to_json()  # each field's value when neither recipe nor flag sets it
# recipe entries that set the lr rule (not fields), and what their number is per (for --help)
LR_RULES = {"lr_per_128": "per 128 images", "lr_per_device": "per device"}


@dataclass(frozen=True)
class Recipe:
    """A named set of field values. Its lr rule is `lr_per_128` (scaled by the global batch) or
    `lr_per_device` (scaled by the world size); `about` is its line in `--help`."""

    about: str
    values: dict[str, Any]


RECIPES: dict[str, Recipe] = {
    "reference": Recipe("HRNet-Image-Classification (SGD nesterov, step decay)",
                        dict(epochs=100, batch_size=128, schedule="step", milestones=[30, 60, 90], gamma=0.1,
                             weight_decay=1e-4, nesterov=True, lr_per_128=0.05)),
    "ascend": Recipe("the Ascend ModelZoo port (lr per device, scaled by the world size)",
                     dict(epochs=100, batch_size=256, schedule="step", milestones=[30, 60, 90], gamma=0.1,
                          weight_decay=1e-4, nesterov=True, lr_per_device=0.1)),
    "cosine": Recipe("warm-up, cosine decay, label smoothing, no weight decay on BN and bias",
                     dict(epochs=100, batch_size=128, schedule="cosine", warmup_epochs=5, label_smoothing=0.1,
                          no_wd_norm_bias=True, weight_decay=1e-4, nesterov=True, lr_per_128=0.05)),
    # FFCV's ResNet-50 ImageNet recipe (its rn50 configs: short runs, a 2-epoch ramp, linear decay to 0, label
    # smoothing 0.1, no decay on BN, train crops 160 -> 192) carried over; lr and optimizer stay HRNet's.
    # The crop ramp spans the whole run (FFCV's 40-epoch config ramps over epochs 29-34) so that it
    # follows --epochs; an --image-size given replaces it (see resolve).
    "fast": Recipe("FFCV's ResNet schedule carried to HRNet, derived, not measured on ImageNet: 40 epochs, "
                   "2 warm-up epochs, linear decay to 0, label smoothing, no weight decay on BN and bias, "
                   "train crops 160 -> 192 px over the run, val at 224",
                   dict(epochs=40, batch_size=128, schedule="linear", warmup_epochs=2, label_smoothing=0.1,
                        no_wd_norm_bias=True, weight_decay=1e-4, nesterov=True, res="160:192", val_image_size=224,
                        lr_per_128=0.05)),
}


def recipe_defaults(setting: str) -> dict[str, Any]:
    """The value `setting` takes under each recipe when no flag sets it (what `--help` shows)."""
    return {name: recipe.values.get(setting, DEFAULTS[setting]) for name, recipe in RECIPES.items()}


# Not taken from a resumed run or a --config file: where and how this process runs (or what
# follows from the world size), not what the run computes.
RUN_LOCAL = ("out", "resume", "stop_step", "device", "compile", "graph", "tensorboard",
             "world_size", "global_batch", "base_lr")


def inherit(overrides: dict[str, Any], saved: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Resume: settings the command line leaves unset (None) come from the run's saved config, so
    `--resume auto` continues the same recipe, batch, precision and loader layout (the loader's
    position depends on --workers) without repeating every flag. Another --recipe brings its own
    values instead of the run's. Returns the merged overrides and the run's values that differ
    from what this command line alone would give (what the user should hear about)."""
    known = set(SETTINGS) - set(RUN_LOCAL)
    if overrides.get("recipe") not in (None, saved.get("recipe")):  # a new recipe brings its own values
        known -= {key for recipe in RECIPES.values() for key in recipe.values}
    taken = {k: v for k, v in saved.items() if k in known and overrides.get(k) is None and v is not None}
    alone = resolve(overrides, world_size=1).to_json()
    return {**overrides, **taken}, {k: v for k, v in taken.items() if alone.get(k) != v}


def read_settings(path: Path) -> dict[str, Any]:
    """`--config FILE`: the settings of a run's `config.json`, for `inherit` to fill the flags
    left unset. Unknown keys are refused: a typo or a file from another tool must not be ignored."""
    try:
        settings = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--config {path}: cannot read it as JSON ({exc}): pass a run's config.json") from None
    if not isinstance(settings, dict):
        raise UserError(f"--config {path} holds a {type(settings).__name__}, not settings: pass a run's config.json")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise UserError(f"--config {path}: unknown setting(s) {', '.join(unknown)}: "
                        "remove them (config.json as hrnet-fast train writes it has none)")
    return settings


def resolve(overrides: dict[str, Any], world_size: int, *, default_precision: str | None = None,
            workers: int | None = None, num_classes: int | None = None) -> TrainConfig:
    """Recipe values, then the user's flags (those not None), then derived fields: the final,
    frozen configuration. What the flags leave unset falls back on what the caller knows:
    `default_precision` (the device's), `workers` (the count the ranks agreed on; None: this
    host's default) and `num_classes` (the train manifest's class count)."""
    recipe_name = overrides.get("recipe") or TrainConfig.recipe
    if recipe_name not in RECIPES:
        raise UserError(f"unknown recipe {recipe_name!r}: choose one of {', '.join(RECIPES)}")
    recipe = {k: v for k, v in RECIPES[recipe_name].values.items() if k not in LR_RULES}
    if overrides.get("image_size") is not None and overrides.get("res") is None:
        recipe.pop("res", None)  # a constant size asked for: the recipe's ramp yields to it
    unknown = set(overrides) - set(SETTINGS)
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(sorted(unknown))}")
    fallbacks = {"precision": default_precision, "workers": workers if workers is not None else default_workers(),
                 "num_classes": num_classes}
    values = {**recipe, **_given(fallbacks), **_given(overrides), "recipe": recipe_name}
    global_batch = values.get("batch_size", TrainConfig.batch_size) * world_size
    values.update(world_size=world_size, global_batch=global_batch,
                  base_lr=base_lr(values.get("lr"), RECIPES[recipe_name], world_size, global_batch))
    cfg = TrainConfig(**values)
    validate(cfg)
    return cfg


def resolved(value: T | None, setting: str) -> T:
    """`value`, a setting that may be None in a TrainConfig but not in one `resolve` made for a run:
    `workers` always, `precision` and `num_classes` where the caller passed what they fall back on
    (train() passes both and refuses a missing class count). None here is a programming error."""
    if value is None:
        raise ValueError(f"TrainConfig.{setting} is unset: build the configuration with resolve() and pass "
                         f"what {setting} falls back on")
    return value


def _given(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that are set: None means 'not given, fall back'."""
    return {k: v for k, v in settings.items() if v is not None}


def base_lr(lr: float | None, recipe: Recipe, world_size: int, global_batch: int) -> float:
    """The peak lr: --lr as given, else the recipe's rule for this world size and global batch."""
    if lr is not None:
        return lr
    if "lr_per_device" in recipe.values:
        return recipe.values["lr_per_device"] * world_size
    return recipe.values["lr_per_128"] * global_batch / 128


def validate(cfg: TrainConfig) -> None:
    """Refuse settings no run can use, with the flag to change, before anything starts."""
    checks = [
        (cfg.epochs >= 1, "--epochs must be at least 1"),
        (cfg.batch_size >= 1, "--batch-size must be at least 1"),
        (cfg.image_size >= 32, "--image-size must be at least 32 (HRNet downsamples 32×)"),
        (cfg.base_lr > 0, "--lr must be positive"),
        (cfg.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
        (resolved(cfg.workers, "workers") >= 0, "--workers must be 0 or more"),
        (cfg.mixup >= 0 and cfg.cutmix >= 0, "--mixup and --cutmix must be 0 (off) or a positive Beta alpha"),
        (0.0 <= cfg.mix_prob <= 1.0 and 0.0 <= cfg.mix_switch_prob <= 1.0,
         "--mix-prob and --mix-switch-prob must be between 0 and 1"),
        (0.0 <= cfg.ema_decay < 1.0, "--ema-decay must be 0 (off) or a decay below 1, e.g. 0.9998"),
        (cfg.precise_bn >= 0, "--precise-bn must be 0 (off) or a number of batches"),
        (cfg.stop_step is None or cfg.stop_step >= 1, "--stop-step must be at least 1"),
        (cfg.align_channels in ALIGN_CHOICES, f"--align-channels must be one of {', '.join(ALIGN_CHOICES)}"),
        (not (cfg.graph and cfg.sync_bn and cfg.world_size > 1),
         "--graph and --sync-bn do not combine (SyncBatchNorm communicates inside the forward): drop one of them"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    if cfg.res is not None:
        parse_res(cfg.res, cfg.epochs)
