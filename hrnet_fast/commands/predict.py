"""`hrnet-fast predict`: top-k classes for image files, preprocessed exactly as eval does."""
from __future__ import annotations

import json
from pathlib import Path

import click

from hrnet_fast import log as logs
from hrnet_fast.commands.options import DEVICE_CHOICES, PRECISION_CHOICES, PRECISION_HELP
from hrnet_fast.config import TrainConfig

log = logs.get(__name__)


@click.command("predict")
@click.option("--ckpt", required=True, help="Our checkpoint or an official / timm state dict (with --model).")
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--topk", type=int, default=5, show_default=True)
@click.option("--model", help="Model name, needed for plain state dicts.")
@click.option("--shards", help="Shard directory whose manifest names the classes (plain state dicts).")
@click.option("--image-size", type=int, help=f"Center-crop size [the checkpoint's, else {TrainConfig.image_size}].")
@click.option("--crop-ratio", type=float, default=0.875, show_default=True)
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), help=PRECISION_HELP)
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image instead of text.")
def predict(ckpt: str, images: tuple[str, ...], topk: int, model: str | None, shards: str | None,
            image_size: int | None, crop_ratio: float, precision: str | None, device: str,
            as_json: bool) -> None:
    """Print the top-k classes (index, synset, name, probability) for each IMAGE."""
    import torch

    from hrnet_fast.data import Normalize, decode_val_image
    from hrnet_fast.device import resolve_device
    from hrnet_fast.errors import UserError
    from hrnet_fast.inference import load_for_inference

    dev = resolve_device(device)
    dev.activate()
    loaded = load_for_inference(ckpt, model, dev, precision)
    classes, names = loaded.classes, loaded.class_names
    if shards:
        from hrnet_fast.shardformat.manifest import read_manifest
        manifest = read_manifest(Path(shards))
        classes, names = manifest.classes, manifest.class_names
    size = image_size or loaded.image_size
    normalize = Normalize(dev, loaded.precision.input_dtype)
    failed = []
    for path in images:
        try:
            pixels = decode_val_image(Path(path).read_bytes(), size, crop_ratio)
        except (OSError, ValueError, UserError) as exc:
            log.warning(f"{path}: cannot read image ({exc})")
            failed.append(path)
            continue
        x = normalize(torch.from_numpy(pixels).unsqueeze(0))
        with torch.no_grad(), loaded.precision.autocast():
            probs = loaded.model(x).float().softmax(dim=1)[0]
        top = probs.topk(min(topk, probs.numel()))
        rows = []
        for p, i in zip(top.values.tolist(), top.indices.tolist()):
            synset = classes[i] if i < len(classes) else str(i)
            rows.append({"index": i, "synset": synset, "name": names.get(synset, ""), "prob": round(p, 5)})
        if as_json:
            log.info(json.dumps({"image": path, "top": rows}))
        else:
            log.info(path)
            for rank, row in enumerate(rows, 1):
                label = f"{row['synset']} {row['name']}".strip()
                log.info(f"  {rank}. {100 * row['prob']:6.2f}%  [{row['index']}] {label}")
    if failed:
        raise UserError(f"{len(failed)} of {len(images)} images could not be read (first: {failed[0]})")
