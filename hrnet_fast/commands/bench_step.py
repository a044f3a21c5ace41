"""`hrnet-fast bench step`: train-step images/s on synthetic on-device input (no loader)."""
from __future__ import annotations

import json

import click

from hrnet_fast import log as logs
from hrnet_fast.commands.options import (
    ALIGN_CHOICES,
    ALIGN_HELP,
    DEVICE_CHOICES,
    MODEL_HELP,
    PRECISION_CHOICES,
    PRECISION_HELP,
)
from hrnet_fast.config import TrainConfig

log = logs.get(__name__)


@click.command("step")
@click.option("--model", default=TrainConfig.model, show_default=True, help=MODEL_HELP)
@click.option("--batch-size", type=int, default=256, show_default=True, help="Per-device batch.")
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), help=PRECISION_HELP)
@click.option("--image-size", type=int, default=224, show_default=True)
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="auto", show_default=True)
@click.option("--steps", type=int, default=20, show_default=True, help="Timed steps.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed steps first.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model (inductor; torchair on NPU).")
@click.option("--graph", is_flag=True, help="Replay forward + backward from a captured CUDA/NPU graph.")
@click.option("--align-channels", type=click.Choice(ALIGN_CHOICES), default="auto", show_default=True,
              help=ALIGN_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def bench_step(model: str, batch_size: int, precision: str | None, image_size: int, device: str,
               steps: int, warmup: int, compile_: bool, graph: bool, align_channels: str, as_json: bool) -> None:
    """Forward + backward + fused SGD on random on-device batches: the step's ceiling.

    Warm-up steps are untimed and include compilation and graph capture (with --graph at least
    GRAPH_WARMUP_STEPS + 1 of them, so the capture never lands in the timed steps). Peak memory
    covers the warm-up steps after the first, so a graph's activations are counted."""
    import torch
    from torch import nn

    from hrnet_fast.config import resolve
    from hrnet_fast.device import resolve_device
    from hrnet_fast.errors import UserError
    from hrnet_fast.precision import MixedPrecision
    from hrnet_fast.step import GRAPH_WARMUP_STEPS, make_step
    from hrnet_fast.timing import time_steps, warm_up_steps
    from hrnet_fast.train import build_model_and_optimizer

    dev = resolve_device(device)
    dev.activate()
    cfg = resolve({"model": model, "batch_size": batch_size, "image_size": image_size,
                   "num_classes": 1000, "device": device, "align_channels": align_channels, "graph": graph},
                  world_size=1)
    prec = MixedPrecision(precision or dev.default_precision(), dev)
    net, optimizer = build_model_and_optimizer(cfg, dev, prec)
    step_fn = make_step(dev.compile(net) if compile_ else net, nn.CrossEntropyLoss(), prec, optimizer, graph)
    warmup = max(warmup, GRAPH_WARMUP_STEPS + 1) if graph else warmup
    x = torch.randn(batch_size, 3, image_size, image_size, device=dev.torch_device)
    x = x.to(dtype=prec.input_dtype, memory_format=dev.memory_format)
    labels = torch.randint(0, 1000, (batch_size,), device=dev.torch_device)

    def step() -> torch.Tensor:
        return step_fn(x, labels)

    warmup_seconds, warmup_peak_mb = warm_up_steps(step, dev, warmup)
    dev.reset_peak_memory()
    seconds, loss = time_steps(step, dev, steps)
    if loss is None:
        raise UserError("--steps 0 times nothing: pass --steps 1 or more")
    peak_mb = max(warmup_peak_mb, dev.max_memory_allocated() / 2**20)
    result = {
        "model": model, "device": dev.describe(), "precision": prec.name, "batch_size": batch_size,
        "image_size": image_size, "compile": compile_, "graph": graph, "steps": steps, "warmup": warmup,
        "align_channels": dev.channel_align(align_channels) or "off",
        "images_per_s": round(steps * batch_size / seconds, 2),
        "warmup_seconds": round(warmup_seconds, 2), "peak_memory_mb": round(peak_mb, 1),
        "final_loss": round(float(loss), 4),
    }
    log.info(f"{model} {prec.name} batch {batch_size} @ {image_size}px on {result['device']}: "
             f"{result['images_per_s']:.1f} img/s (peak {result['peak_memory_mb']} MB, "
             f"warm-up {result['warmup_seconds']} s)")
    if as_json:
        log.info(json.dumps(result))
