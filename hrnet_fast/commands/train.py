"""`hrnet-fast train`: flags map one-to-one onto TrainConfig; unset flags take the recipe's value."""
from __future__ import annotations

import click

from hrnet_fast.commands.options import ALIGN_CHOICES, ALIGN_HELP, DEVICE_CHOICES, MODEL_HELP, PRECISION_CHOICES


@click.command("train")
@click.option("--shards", default="./shards", show_default=True,
              help="Packed shard directory, or a WebDataset URL / brace pattern (with --num-samples).")
@click.option("--num-samples", type=int, help="Train samples in --shards when it is a URL.")
@click.option("--val-shards", help="Val shards when they are not the val split of --shards.")
@click.option("--val-num-samples", type=int, help="Val samples in --val-shards when it is a URL.")
@click.option("--model", default="hrnet_w18", show_default=True, help=MODEL_HELP)
@click.option("--num-classes", type=int, help="Classes (default: from the manifest).")
@click.option("--recipe", type=click.Choice(["reference", "ascend", "cosine"]), default="reference",
              show_default=True, help="reference: paper (lr 0.05/128 img, steps 30/60/90); ascend: "
              "256/device, lr 0.1×world; cosine: warm-up + cosine + label smoothing.")
@click.option("--epochs", type=int, help="Epochs [recipe: 100].")
@click.option("--batch-size", type=int, help="Per-device batch [recipe: 128, ascend 256].")
@click.option("--lr", type=float, help="Peak learning rate [recipe rule, scaled by the global batch].")
@click.option("--momentum", type=float, help="SGD momentum [0.9].")
@click.option("--weight-decay", type=float, help="Weight decay [1e-4].")
@click.option("--warmup-epochs", type=float, help="Linear warm-up epochs [cosine: 5].")
@click.option("--label-smoothing", type=float, help="Label smoothing [cosine: 0.1].")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES),
              help="fp32 | amp (fp16 autocast) | bf16 | o2 (apex O2) [o2 on NPU, bf16 on CUDA, fp32 on CPU].")
@click.option("--loss-scale", type=float, help="Static loss scale for amp/o2 (Ascend port: 128) [dynamic].")
@click.option("--image-size", type=int, help="Train crop size [224].")
@click.option("--crop-scale-min", type=float, help="Smallest RandomResizedCrop area fraction [0.08].")
@click.option("--hflip/--no-hflip", default=None, help="Random horizontal flips [on].")
@click.option("--val-image-size", type=int, help="Val crop size [--image-size].")
@click.option("--workers", type=int, help="Loader worker processes per device [this rank's CPU cores - 1, at most 8].")
@click.option("--shuffle-buffer", type=int, help="Samples in the shuffle buffer per worker [4096].")
@click.option("--out", help="Run directory [runs/MODEL].")
@click.option("--resume", help="auto (continue --out's last.pt if any) or a checkpoint path; flags "
              "not given come from the run's saved config.")
@click.option("--stop-step", type=int, help="End after N steps (performance mode).")
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
@click.option("--seed", type=int, help="Seed for model init and data order [0].")
@click.option("--log-interval", type=int, help="Steps between metric reads (host syncs) [20].")
@click.option("--val-every", type=int, help="Validate every N epochs [1].")
@click.option("--precise-bn", type=int, help="Before each validation, recompute BatchNorm statistics "
              "for the current weights from N train batches (short runs, small data) [0: off].")
@click.option("--ckpt-minutes", type=float, help="Also save last.pt every N minutes [30].")
@click.option("--max-bad-steps", type=int, help="Abort after N non-finite steps in a row [50].")
@click.option("--sync-bn", is_flag=True, default=None, help="SyncBatchNorm across ranks.")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the model.")
@click.option("--align-channels", type=click.Choice(ALIGN_CHOICES), default=None, help=ALIGN_HELP)
@click.option("--graph", is_flag=True, default=None,
              help="Replay forward + backward from a captured CUDA/NPU graph (no DDP: one all-reduce a step).")
@click.option("--tensorboard", is_flag=True, default=None, help="Also log to RUN_DIR/tensorboard.")
def train(**flags) -> None:
    """Train an HRNet on packed shards: one process, or one per device under torchrun.

    Writes RUN_DIR/config.json, metrics.jsonl, checkpoints/last.pt and best.pt, summary.json
    (also after SIGTERM / SIGINT, which save and exit 0), and ends with
    `FPS <number>` (global batch / step time after warm-up, data waiting included).
    """
    from hrnet_fast.config import TrainConfig
    from hrnet_fast.train import train as run_training

    context = click.get_current_context()
    for name in ("shards", "model", "recipe"):  # defaults count as unset: a resumed run keeps its own
        if context.get_parameter_source(name) is click.core.ParameterSource.DEFAULT:
            flags[name] = None
    flags["compile"] = flags.pop("compile_")
    flags["out"] = flags["out"] or f"runs/{flags['model'] or TrainConfig.model}"
    run_training(flags)
