"""`hrnet-fast eval`: Acc@1 / Acc@5 of a checkpoint; every val image counted once over all ranks."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click

from hrnet_fast import log as logs
from hrnet_fast.commands.options import (
    ALIGN_CHOICES,
    ALIGN_HELP,
    DEVICE_CHOICES,
    PRECISION_CHOICES,
    PRECISION_HELP,
    WORKERS_HELP,
)
from hrnet_fast.config import TrainConfig

log = logs.get(__name__)


@click.command("eval")
@click.option("--ckpt", required=True, help="Our checkpoint (last.pt / best.pt) or an official / timm state dict.")
@click.option("--shards", default=TrainConfig.shards, show_default=True, help="Shard directory or URL (with --num-samples).")
@click.option("--num-samples", type=int, help="Samples in --shards when it is a URL.")
@click.option("--model", help="Model name, needed for plain state dicts (ours carry it).")
@click.option("--split", default="val", show_default=True)
@click.option("--batch-size", type=int, default=100, show_default=True, help="Per-device batch.")
@click.option("--image-size", type=int, help=f"Center-crop size [the checkpoint's, else {TrainConfig.image_size}].")
@click.option("--crop-ratio", type=float, default=0.875, show_default=True, help="Crop / resize (224/256).")
@click.option("--workers", type=int, help=WORKERS_HELP)
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), help=PRECISION_HELP)
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
@click.option("--align-channels", type=click.Choice(ALIGN_CHOICES), default="auto", show_default=True,
              help=ALIGN_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
@click.option("--save-predictions", type=click.Path(dir_okay=False), help="Write key,label,top1,top5 CSV.")
def evaluate(ckpt: str, shards: str, num_samples: int | None, model: str | None, split: str,
             batch_size: int, image_size: int | None, crop_ratio: float, workers: int | None,
             precision: str | None, device: str, align_channels: str, as_json: bool,
             save_predictions: str | None) -> None:
    """Evaluate a checkpoint; ends with `Acc@1 A Acc@5 B images N`. Runs under torchrun too."""
    from hrnet_fast import distributed
    from hrnet_fast.data import DevicePrefetcher, ValLoader, open_source
    from hrnet_fast.device import resolve_device
    from hrnet_fast.errors import UserError
    from hrnet_fast.evaluate import evaluate as run_eval
    from hrnet_fast.inference import load_for_inference

    world = distributed.world_from_env()
    dev = resolve_device(device)
    dev.activate()
    loaded = load_for_inference(ckpt, model, dev, precision, align_channels)
    source = open_source(shards, split, num_samples)
    num_classes = loaded.model.classifier.out_features
    if source.classes and len(source.classes) != num_classes:
        raise UserError(f"{ckpt} predicts {num_classes} classes but {shards} has {len(source.classes)}: "
                        "evaluate on the shards it was trained for")
    if source.classes and loaded.classes and list(source.classes) != loaded.classes:
        raise UserError(f"the class list in {ckpt} differs from {shards}'s manifest: the labels would not match")
    distributed.init(dev, world)
    try:
        workers = distributed.agreed_workers(workers, dev)
        dev.share_cores_with_loader(workers)
        loader = ValLoader(source, batch_size=batch_size, image_size=image_size or loaded.image_size,
                           rank=world.rank, world_size=world.size, num_workers=workers,
                           crop_ratio=crop_ratio, pin_memory=dev.pin_memory)
        batches = DevicePrefetcher(loader, dev, dtype=loaded.precision.input_dtype)
        result = run_eval(loaded.model, batches, dev, loaded.precision.autocast,
                          collect_predictions=save_predictions is not None)
    finally:
        distributed.shutdown()
    if not world.is_main:
        return
    if save_predictions:
        write_predictions(Path(save_predictions), result.predictions)
    log.info(f"{loaded.name} on {dev.describe()} × {world.size}: {result.images_per_s:.1f} images/s "
             f"({result.seconds:.1f} s)")
    log.info(result.line())
    if as_json:
        log.info(json.dumps({"acc1": round(result.acc1, 4), "acc5": round(result.acc5, 4),
                             "images": result.images, "seconds": round(result.seconds, 3),
                             "images_per_s": round(result.images_per_s, 2), "model": loaded.name}))


def write_predictions(path: Path, predictions: list[tuple[str, int, list[int]]]) -> None:
    """CSV `key,label,top1,top5` (top5 space-separated), written atomically."""
    from hrnet_fast.atomic import write_text_atomic

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["key", "label", "top1", "top5"])
    for key, label, top in predictions:
        writer.writerow([key, label, top[0], " ".join(map(str, top))])
    write_text_atomic(path, buffer.getvalue())
