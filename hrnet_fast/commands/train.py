"""`hrnet-fast train`: flags map one-to-one onto TrainConfig; unset flags take the recipe's value.

Defaults, choices and the values in brackets come from the tables (TrainConfig, RECIPES, the
model zoo, PRECISIONS), never typed here.
"""
from __future__ import annotations

from pathlib import Path

import click

from hrnet_fast.commands.options import (
    ALIGN_CHOICES,
    ALIGN_HELP,
    DEVICE_CHOICES,
    LR_HELP,
    MODEL_HELP,
    PRECISION_CHOICES,
    PRECISION_HELP,
    RECIPE_HELP,
    RES_HELP,
    SCHEDULE_CHOICES,
    SCHEDULE_TEXT,
    WORKERS_HELP,
    setting_help,
)
from hrnet_fast.config import RECIPES, RUN_LOCAL, TrainConfig


@click.command("train")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A run's config.json as the base: its settings fill the flags not given, as if typed "
              f"before them (not its run-local ones: {', '.join(RUN_LOCAL)}).")
@click.option("--shards", default=TrainConfig.shards, show_default=True,
              help="Packed shard directory, or a WebDataset URL / brace pattern (with --num-samples).")
@click.option("--num-samples", type=int, help="Train samples in --shards when it is a URL.")
@click.option("--val-shards", help="Val shards when they are not the val split of --shards.")
@click.option("--val-num-samples", type=int, help="Val samples in --val-shards when it is a URL.")
@click.option("--model", default=TrainConfig.model, show_default=True, help=MODEL_HELP)
@click.option("--num-classes", type=int, help="Classes (default: from the manifest).")
@click.option("--recipe", type=click.Choice(list(RECIPES)), default=TrainConfig.recipe, show_default=True,
              help=RECIPE_HELP)
@click.option("--epochs", type=int, help=setting_help("Epochs", "epochs"))
@click.option("--batch-size", type=int, help=setting_help("Per-device batch", "batch_size"))
@click.option("--lr", type=float, help=LR_HELP)
@click.option("--momentum", type=float, help=setting_help("SGD momentum", "momentum"))
@click.option("--weight-decay", type=float, help=setting_help("Weight decay", "weight_decay"))
@click.option("--schedule", type=click.Choice(SCHEDULE_CHOICES), help=setting_help(SCHEDULE_TEXT, "schedule"))
@click.option("--warmup-epochs", type=float, help=setting_help("Linear warm-up epochs", "warmup_epochs"))
@click.option("--label-smoothing", type=float, help=setting_help("Label smoothing", "label_smoothing"))
@click.option("--mixup", type=float, help=setting_help(
    "Mixup: blend each batch with itself flipped, lam ~ Beta(A, A) (timm's batch mode; 0: off)", "mixup"))
@click.option("--cutmix", type=float, help=setting_help(
    "CutMix: paste a box from the flipped batch, area ~ Beta(A, A) (0: off)", "cutmix"))
@click.option("--mix-prob", type=float, help=setting_help("Share of batches mixed when --mixup/--cutmix are on",
                                                          "mix_prob"))
@click.option("--mix-switch-prob", type=float, help=setting_help(
    "Share of mixed batches that use CutMix when both are on", "mix_switch_prob"))
@click.option("--ema-decay", type=float, help=setting_help(
    "Also keep an EMA of the weights with this decay per step (e.g. 0.9998; timm's ModelEmaV3 with warm-up), "
    "validated beside the raw weights and saved in checkpoints (0: off)", "ema_decay"))
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), help=PRECISION_HELP)
@click.option("--loss-scale", type=float, help="Static loss scale for amp/o2 (Ascend port: 128) [dynamic].")
@click.option("--image-size", type=int, help=setting_help("Train crop size (with --res: the val size's fallback only)",
                                                            "image_size"))
@click.option("--res", help=setting_help(RES_HELP, "res"))
@click.option("--crop-scale-min", type=float, help=setting_help("Smallest RandomResizedCrop area fraction",
                                                                 "crop_scale_min"))
@click.option("--hflip/--no-hflip", default=None, help=setting_help("Random horizontal flips", "hflip"))
@click.option("--val-image-size", type=int, help=setting_help("Val crop size (unset: --image-size)", "val_image_size"))
@click.option("--workers", type=int, help=WORKERS_HELP)
@click.option("--shuffle-buffer", type=int, help=setting_help(
    "Samples a worker shuffles together: a window of N // batch-size batches (indexed shards), else a buffer",
    "shuffle_buffer"))
@click.option("--out", help="Run directory [runs/MODEL].")
@click.option("--resume", help="auto (continue --out's last.pt if any) or a checkpoint path; flags "
              "not given come from the run's saved config.")
@click.option("--stop-step", type=int, help="End after N steps (performance mode).")
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default=TrainConfig.device, show_default=True)
@click.option("--seed", type=int, help=setting_help("Seed for model init and data order", "seed"))
@click.option("--log-interval", type=int, help=setting_help("Steps between metric reads (host syncs)", "log_interval"))
@click.option("--val-every", type=int, help=setting_help("Validate every N epochs", "val_every"))
@click.option("--precise-bn", type=int, help=setting_help("Before each validation, recompute BatchNorm statistics "
              "for the current weights from N train batches (short runs, small data; 0: off)", "precise_bn"))
@click.option("--ckpt-minutes", type=float, help=setting_help("Also save last.pt every N minutes", "ckpt_minutes"))
@click.option("--max-bad-steps", type=int, help=setting_help("Abort after N non-finite steps in a row", "max_bad_steps"))
@click.option("--sync-bn", is_flag=True, default=None, help="SyncBatchNorm across ranks.")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the model.")
@click.option("--align-channels", type=click.Choice(ALIGN_CHOICES), default=None, help=ALIGN_HELP)
@click.option("--graph", is_flag=True, default=None,
              help="Replay forward + backward from a captured CUDA/NPU graph (no DDP: one all-reduce a step).")
@click.option("--tensorboard", is_flag=True, default=None, help="Also log to RUN_DIR/tensorboard.")
def train(config_file: Path | None, **flags) -> None:
    """Train an HRNet on packed shards: one process, or one per device under torchrun.

    Writes RUN_DIR/config.json, metrics.jsonl, checkpoints/last.pt and best.pt, summary.json
    (also after SIGTERM / SIGINT, which save and exit 0), and ends with
    `FPS <number>` (global batch / step time after warm-up, data waiting included).
    """
    from hrnet_fast.config import inherit, read_settings
    from hrnet_fast.train import train as run_training

    context = click.get_current_context()
    for name in ("shards", "model", "recipe"):  # defaults count as unset: a resumed run keeps its own
        if context.get_parameter_source(name) is click.core.ParameterSource.DEFAULT:
            flags[name] = None
    flags["compile"] = flags.pop("compile_")
    if config_file is not None:  # as if its settings were typed before the flags given
        flags = inherit(flags, read_settings(config_file))[0]
    flags["out"] = flags["out"] or f"runs/{flags['model'] or TrainConfig.model}"
    run_training(flags)
