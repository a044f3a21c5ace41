"""Training throughput from packed shards vs the same step on synthetic input (target >= 90 % on GPU).

Why: `hrnet-fast bench step` is the step's ceiling; a real run adds decoding, augmentation, the
device copy and normalization. If the loader keeps up, `hrnet-fast train` from shards runs within
10 % of that ceiling. Both sides use the same model, batch, precision and image size.

    python benchmarks/end_to_end.py [--shards DIR] [--device auto] [--model M] [--batch-size B]
        [--image-size S] [--precision P] [--workers W] [--stop-step N] [--resize 384] [--json]

Without --shards it writes an ImageNet-like tree of photo-like JPEGs (benchmarks/pack_vs_tar.py's
generator: ImageNet's mix of sizes, a few distinct images behind many files) just large enough
that one epoch covers --stop-step steps, and packs it with `python -m pack imagenet --resize`.
Both are cached under --work. The train run's FPS excludes its first --log-interval steps
(hrnet-fast's RateMeter), so --stop-step must be well above --log-interval; the synthetic run
times as many steps as the train run does.

Defaults follow the device: on an accelerator hrnet_w18, batch 256 at 224 px, amp, the trainer's
default workers (cores - 1, at most 8); on the CPU a smoke run: hrnet_w18_small_v1, batch 8 at
64 px, fp32, 1 worker. The loader fills its queue (workers x 4 batches) during the first, untimed
interval, and a queue hides a slow loader for queue / shortfall steps; so the run is as long as
ten queues after that interval (8 workers: 330 steps), and the generated shards (two per worker)
are listed as often as that takes (symlinks), so no more images need writing or packing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from pack_vs_tar import make_tree  # noqa: E402

from hrnet_fast.atomic import write_json_atomic  # noqa: E402
from hrnet_fast.commands.options import DEVICE_CHOICES  # noqa: E402
from hrnet_fast.data.loader import TRAIN_PREFETCH  # noqa: E402
from hrnet_fast.device import resolve_device  # noqa: E402
from hrnet_fast.host import default_workers  # noqa: E402
from hrnet_fast.precision import PRECISIONS  # noqa: E402

VAL_SHARE = 0.1  # make_tree puts every tenth file in val, which this benchmark does not pack
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run(command: list[str]) -> str:
    """Run a project command from the repo root; its stdout, or exit with its stderr's tail."""
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=ROOT, env=CHILD_ENV, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return done.stdout


def packed_shards(work: Path, train_images: int, batch_size: int, resize: int, unique: int, workers: int) -> Path:
    """A cached shard directory with at least `train_images` train samples in shards of one batch."""
    images = math.ceil(train_images / (1 - VAL_SHARE)) + 10
    shards = work / f"shards-{images}-r{resize}-s{batch_size}"
    if not (shards / "manifest.json").exists():
        tree = make_tree(work / f"tree-{images}-{unique}", images, unique)
        run([sys.executable, "-m", "pack", "imagenet", str(tree), "--out", str(shards), "--splits", "train",
             "--shard-size", str(batch_size), "--resize", str(resize), "--workers", str(workers)])
    return shards


def repeated_shards(shards: Path, samples: int) -> Path:
    """`shards`' train split listed again and again (symlinks and a manifest) until it holds at
    least `samples`: a long epoch without writing and packing that many images."""
    manifest = json.loads((shards / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    copies = math.ceil(samples / train["num_samples"])
    if copies <= 1:
        return shards
    out = shards.parent / f"{shards.name}-x{copies}"
    if not (out / "manifest.json").exists():
        out.mkdir(exist_ok=True)
        listed = []
        for copy in range(copies):
            for shard in train["shards"]:
                name = f"train-x{copy:03d}-{shard['name']}"
                link = out / name
                if not link.is_symlink():
                    link.symlink_to((shards / shard["name"]).resolve())
                listed.append({**shard, "name": name})
        manifest["splits"] = {"train": {**train, "shards": listed, "num_samples": copies * train["num_samples"]}}
        write_json_atomic(out / "manifest.json", manifest)
    return out


def train_fps(args: argparse.Namespace, shards: Path) -> tuple[float, float]:
    """`hrnet-fast train --stop-step` from the shards: its final FPS and mean data-wait share."""
    run_dir = args.work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: no resume, no appended metrics
    out = run([sys.executable, "-m", "hrnet_fast", "train", "--shards", str(shards), *common_flags(args),
               "--workers", str(args.workers), "--stop-step", str(args.stop_step),
               "--log-interval", str(args.log_interval), "--out", str(run_dir)])
    found = re.findall(r"^FPS ([0-9.]+)$", out, re.MULTILINE)
    if not found:
        sys.exit(f"`hrnet-fast train` printed no FPS line:\n{out[-2000:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    waits = [r["data_wait_share"] for r in records if r.get("kind") == "train"][1:]  # as FPS: skip the first
    return float(found[-1]), sum(waits) / len(waits) if waits else math.nan


def synthetic(args: argparse.Namespace) -> dict:
    """`hrnet-fast bench step --json`: the same step on random on-device batches."""
    out = run([sys.executable, "-m", "hrnet_fast", "bench", "step", *common_flags(args),
               "--steps", str(args.bench_steps), "--warmup", "5", "--json"])
    return json.loads(out.strip().splitlines()[-1])


def common_flags(args: argparse.Namespace) -> list[str]:
    """What makes the two runs comparable: model, batch, precision, image size, device, step."""
    flags = ["--model", args.model, "--batch-size", str(args.batch_size), "--precision", args.precision,
             "--image-size", str(args.image_size), "--device", args.device]
    return flags + (["--compile"] if args.compile else []) + (["--graph"] if args.graph else [])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shards", type=Path, help="Packed shards to train from [generate and pack].")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "end_to_end")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--model", help="[hrnet_w18; CPU: hrnet_w18_small_v1]")
    parser.add_argument("--batch-size", type=int, help="[256; CPU: 8]")
    parser.add_argument("--image-size", type=int, help="[224; CPU: 64]")
    parser.add_argument("--precision", choices=PRECISIONS, help="[amp; CPU: fp32]")
    parser.add_argument("--workers", type=int, help="Loader workers [the trainer's default; CPU: 1].")
    parser.add_argument("--stop-step", type=int,
                        help="Train steps [--log-interval + 10 x the batches the loader holds ready].")
    parser.add_argument("--log-interval", type=int, help="Untimed first steps of the train run [10; CPU: 5].")
    parser.add_argument("--bench-steps", type=int, help="Timed synthetic steps [as many as the train run times].")
    parser.add_argument("--resize", type=int, default=384, help="pack --resize (short side; 0 keeps originals).")
    parser.add_argument("--unique", type=int, default=48, help="Distinct generated images behind the files.")
    parser.add_argument("--compile", action="store_true", help="torch.compile in both runs.")
    parser.add_argument("--graph", action="store_true", help="Graph-captured step in both runs (CUDA/NPU).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = parser.parse_args()
    accelerator = resolve_device(args.device).is_accelerator
    defaults = dict(model="hrnet_w18", batch_size=256, image_size=224, precision="amp", workers=default_workers(),
                    log_interval=10) if accelerator else \
        dict(model="hrnet_w18_small_v1", batch_size=8, image_size=64, precision="fp32", workers=1, log_interval=5)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    # The loader fills its queue (workers x TRAIN_PREFETCH batches) while the first, untimed interval
    # warms the model up; a timed window of ten queues lets a slow loader show through.
    args.stop_step = args.stop_step or args.log_interval + 10 * max(args.workers, 1) * TRAIN_PREFETCH
    if args.stop_step <= args.log_interval:
        parser.error("--stop-step must exceed --log-interval: the first interval is not timed")
    args.bench_steps = args.bench_steps or args.stop_step - args.log_interval
    return args


def main() -> None:
    args = parse_args()
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    readers = max(args.workers, 1)
    needed = readers * math.ceil(args.stop_step / readers) * args.batch_size  # one epoch covers the run
    if not args.shards:  # two shards per reader, listed as often as the run needs
        packed = packed_shards(args.work, 2 * readers * args.batch_size, args.batch_size, args.resize,
                               args.unique, len(os.sched_getaffinity(0)))
    shards = args.shards or repeated_shards(packed, needed)
    seconds["prepare"] = time.perf_counter() - start
    start = time.perf_counter()
    fps, wait_share = train_fps(args, shards)
    seconds["train"] = time.perf_counter() - start
    start = time.perf_counter()
    bench = synthetic(args)
    seconds["synthetic"] = time.perf_counter() - start
    ratio = fps / bench["images_per_s"]
    print(f"{args.model} {args.precision} batch {args.batch_size} @ {args.image_size}px on {bench['device']}, "
          f"{args.workers} workers: from shards {fps:.1f} img/s (data wait {wait_share:.0%} of step time), "
          f"synthetic {bench['images_per_s']:.1f} img/s, ratio {ratio:.2f} (target >= 0.9)")
    if args.json:
        print(json.dumps({"model": args.model, "device": bench["device"], "precision": args.precision,
                          "batch_size": args.batch_size, "image_size": args.image_size, "workers": args.workers,
                          "stop_step": args.stop_step, "log_interval": args.log_interval, "resize": args.resize,
                          "compile": args.compile, "graph": args.graph, "shards": str(shards), "shards_images_per_s": fps,
                          "synthetic_images_per_s": bench["images_per_s"], "ratio": round(ratio, 3),
                          "data_wait_share": round(wait_share, 3), "images_per_s": fps,
                          "seconds": {k: round(v, 1) for k, v in seconds.items()}}))


if __name__ == "__main__":
    main()
