"""Train-step images/s of timm's eager HRNet against hrnet-fast's step, in one run on one device.

Why: a user who does not pick hrnet-fast trains timm's `hrnet_w18` the usual way (channels_last,
autocast + GradScaler, fused SGD). Our step must beat that with the same model size, batch and
precision, so both run here in one process on synthetic on-device input (no loader): each is
built and warmed up, then they are timed in alternating rounds between device syncs.

    python benchmarks/step_vs_timm.py [--model hrnet_w18] [--batch-size N] [--precision P]
        [--image-size 224] [--steps 20] [--warmup 5] [--repeats 2] [--device auto] [--compile] [--json]

CPU smoke: `--device cpu --batch-size 4 --image-size 64 --steps 2 --warmup 1`.
Peak memory is the device's max_memory_allocated during a contender's warm-up steps after the
first (cuDNN autotuning's scratch left out; with --graph this includes the capture, the last time
activations are allocated: replays reuse the graph's private pool, which max_memory_allocated no
longer sees) and its timed steps, less what the other contender keeps resident; on the CPU it is
the process's peak RSS (Linux VmHWM, reset before each timed round; both models resident).
Warm-up time counts from building the model to the end
of the warm-up steps, so it includes torch.compile and cuDNN autotuning (timm runs first and fills
cuDNN's cache for the shapes both share).
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from hrnet_fast.commands.options import ALIGN_CHOICES, DEVICE_CHOICES  # noqa: E402
from hrnet_fast.config import TrainConfig, resolve  # noqa: E402
from hrnet_fast.device import Device, resolve_device  # noqa: E402
from hrnet_fast.precision import PRECISIONS, MixedPrecision  # noqa: E402
from hrnet_fast.step import GRAPH_WARMUP_STEPS, make_step  # noqa: E402
from hrnet_fast.timing import time_steps, warm_up_steps  # noqa: E402
from hrnet_fast.train import build_model_and_optimizer  # noqa: E402

Step = Callable[[], torch.Tensor]
# timm has no O2 mode: against our o2 it runs plain fp16 autocast, its closest recipe.
TIMM_AUTOCAST = {"fp32": None, "amp": torch.float16, "bf16": torch.bfloat16, "o2": torch.float16}
TIMM_NAMES = {"hrnet_w18_small_v1": "hrnet_w18_small"}  # the only name timm spells differently


def timm_step(cfg: TrainConfig, device: Device, precision: str, x: torch.Tensor, labels: torch.Tensor) -> Step:
    """timm's model in the usual eager recipe: channels_last, autocast + GradScaler, fused SGD."""
    import timm

    name = TIMM_NAMES.get(cfg.model, cfg.model)
    model = timm.create_model(name, pretrained=False, num_classes=cfg.num_classes)
    model = model.to(device.torch_device, memory_format=torch.channels_last).train()
    optimizer = device.sgd(list(model.parameters()), lr=cfg.base_lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    dtype = TIMM_AUTOCAST[precision]
    scaler = torch.amp.GradScaler(device.kind, enabled=dtype is torch.float16)
    criterion = nn.CrossEntropyLoss()

    def step() -> torch.Tensor:
        with device.autocast(dtype):
            loss = criterion(model(x), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()
    return step


def our_step(cfg: TrainConfig, device: Device, precision: str, x: torch.Tensor, labels: torch.Tensor) -> Step:
    """hrnet-fast's model, optimizer and step exactly as `hrnet-fast train` builds them."""
    mixed = MixedPrecision(precision, device)
    model, optimizer = build_model_and_optimizer(cfg, device, mixed)
    step = make_step(device.compile(model) if cfg.compile else model, nn.CrossEntropyLoss(), mixed,
                     optimizer, cfg.graph)
    inputs = x.to(mixed.input_dtype).contiguous(memory_format=device.memory_format)
    return lambda: step(inputs, labels)


def reset_peak_rss() -> None:
    """Start a new RSS high-water mark for this process (Linux clear_refs); no-op elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """This process's RSS high-water mark (VmHWM, which reset_peak_rss resets), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def allocated_mb(device: Device) -> float:
    """Memory allocated on the accelerator now (a fresh peak equals the current amount)."""
    device.reset_peak_memory()
    return device.max_memory_allocated() / 2**20


def warm_up(build: Callable[[], Step], device: Device, warmup: int) -> tuple[Step, float, float, float]:
    """Build a contender and run its untimed steps: (step, seconds, its peak memory during the
    warm-up steps after the first, memory it keeps between steps)."""
    gc.collect()
    before = allocated_mb(device)
    start = time.perf_counter()
    step = build()
    _, peak = warm_up_steps(step, device, warmup)
    return step, time.perf_counter() - start, max(peak - before, 0.0), allocated_mb(device) - before


def timed(step: Step, device: Device, steps: int) -> tuple[float, float, float]:
    """Seconds for `steps` steps between device syncs, the peak memory meanwhile (MB) and the loss."""
    device.reset_peak_memory()
    reset_peak_rss()
    seconds, loss = time_steps(step, device, steps)
    peak = device.max_memory_allocated() / 2**20 if device.is_accelerator else peak_rss_mb()
    return seconds, peak, float(loss)


def compare(builders: dict[str, Callable[[], Step]], device: Device, batch_size: int, warmup: int,
            steps: int, repeats: int) -> dict[str, dict]:
    """Warm every contender up, then time them in alternating rounds; the best round counts, so a
    burst of other load on a shared machine does not decide the ratio. A contender's peak memory
    on an accelerator excludes what the others keep resident (their weights and optimizer state)."""
    steps_of, results, resident = {}, {}, {}
    for name, build in builders.items():
        steps_of[name], seconds, peak, resident[name] = warm_up(build, device, warmup)
        results[name] = {"images_per_s": 0.0, "warmup_seconds": round(seconds, 2),
                         "peak_memory_mb": round(peak, 1)}
    for _ in range(repeats):
        for name, step in steps_of.items():
            seconds, peak, loss = timed(step, device, steps)
            if device.is_accelerator:
                peak -= sum(mb for other, mb in resident.items() if other != name)
            row = results[name]
            row["images_per_s"] = round(max(row["images_per_s"], steps * batch_size / seconds), 2)
            row["peak_memory_mb"] = round(max(row["peak_memory_mb"], peak), 1)
            row["final_loss"] = round(loss, 4)
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="hrnet_w18",
                        help="hrnet-fast's name; timm's is the same (hrnet_w18_small for _small_v1).")
    parser.add_argument("--batch-size", type=int, help="[256 on an accelerator, 8 on the CPU]")
    parser.add_argument("--precision", choices=PRECISIONS, help="[amp on an accelerator, fp32 on the CPU]")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=20, help="Timed steps per contender.")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed steps first.")
    parser.add_argument("--repeats", type=int, default=2, help="Alternating timed rounds; the best counts.")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--compile", action="store_true", help="torch.compile our model (timm stays eager).")
    parser.add_argument("--graph", action="store_true",
                        help="Replay our forward + backward from a captured graph (timm stays eager).")
    parser.add_argument("--align-channels", default="auto", choices=ALIGN_CHOICES,
                        help="Our channel alignment [auto: 8 on CUDA, 16 on NPU, off on the CPU].")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1, --warmup at least 0")
    if args.graph and args.warmup <= GRAPH_WARMUP_STEPS:
        parser.error(f"--graph captures after {GRAPH_WARMUP_STEPS} eager steps: --warmup must be at least "
                     f"{GRAPH_WARMUP_STEPS + 1} so the capture is not timed")
    return args


def main() -> None:
    args = parse_args()
    device = resolve_device(args.device)
    device.activate()
    precision: str = args.precision or ("amp" if device.is_accelerator else "fp32")
    batch_size: int = args.batch_size or (256 if device.is_accelerator else 8)
    cfg = resolve({"model": args.model, "batch_size": batch_size, "image_size": args.image_size,
                   "num_classes": 1000, "compile": args.compile, "graph": args.graph,
                   "align_channels": args.align_channels}, world_size=1)
    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, args.image_size, args.image_size, device=device.torch_device)
    x = x.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, cfg.num_classes, (batch_size,), device=device.torch_device)

    contenders = {"timm": timm_step, "ours": our_step}
    builders = {name: (lambda build=build: build(cfg, device, precision, x, labels))
                for name, build in contenders.items()}
    results = compare(builders, device, batch_size, args.warmup, args.steps, args.repeats)
    for name, row in results.items():
        print(f"{name:5} {args.model} {precision} batch {batch_size} @ {args.image_size}px on "
              f"{device.describe()}: {row['images_per_s']:.1f} img/s, peak {row['peak_memory_mb']:.0f} MB, "
              f"warm-up {row['warmup_seconds']:.1f} s")
    ratio = results["ours"]["images_per_s"] / results["timm"]["images_per_s"]
    print(f"ours / timm: {ratio:.2f}x (target >= 1)")
    if args.json:
        memory = ("device max allocated, warm-up and timed steps" if device.is_accelerator
                  else "process peak RSS, both models resident")
        print(json.dumps({"model": args.model, "device": device.describe(), "precision": precision,
                          "timm_autocast": str(TIMM_AUTOCAST[precision]), "batch_size": batch_size,
                          "image_size": args.image_size, "steps": args.steps, "warmup": args.warmup,
                          "repeats": args.repeats, "compile": args.compile, "graph": args.graph,
                          "align_channels": device.channel_align(args.align_channels) or "off",
                          "memory": memory, **results, "ratio": round(ratio, 3),
                          "images_per_s": results["ours"]["images_per_s"]}))


if __name__ == "__main__":
    main()
