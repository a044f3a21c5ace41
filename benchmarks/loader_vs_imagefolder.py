"""torchvision ImageFolder + reference transforms vs the hrnet-fast shard loader, same workers.

Why: the shard loader exists to feed accelerators faster per CPU core than the ImageFolder
pipeline the Ascend port used. Both sides do the training augmentation (RandomResizedCrop 224 +
flip); the reference also makes normalized float tensors on the CPU (ToTensor + Normalize), which
hrnet-fast leaves to the device (DevicePrefetcher), so each side is timed up to the batch it
hands to the device copy. Runs: (a) shards packed with defaults (original JPEG bytes) and (b)
shards packed with `--resize 256`; targets ≥ 2× (a) and ≥ 3× (b).

    python benchmarks/loader_vs_imagefolder.py [--src IMAGEFOLDER_ROOT] [--workers N] [--json]

Without --src it writes photo-like ~500×375 JPEGs (tests/imagegen.photo_like, ~95 KB each at
quality 90, about ImageNet's bytes per image) into --work.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from imagegen import encode, photo_like  # noqa: E402

from hrnet_fast.commands.bench_loader import endless, timed  # noqa: E402
from hrnet_fast.data import TrainLoader, open_source  # noqa: E402

SIZES = ((500, 375), (500, 375), (500, 375), (375, 500), (500, 333))  # ImageNet-like mix


def write_images(root: Path, images: int, classes: int) -> None:
    """ImageFolder layout root/train/nXXXXXXXX/nXXXXXXXX_i.JPEG; kept between runs."""
    rng = np.random.default_rng(0)
    for i in range(images):
        synset = f"n{i % classes:08d}"
        path = root / "train" / synset / f"{synset}_{i}.JPEG"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(photo_like(*SIZES[i % len(SIZES)], rng, texture=30), quality=90))


def pack(src: Path, out: Path, resize: int, shard_size: int, workers: int) -> None:
    if (out / "manifest.json").exists():
        return
    subprocess.run([sys.executable, "-m", "pack", "imagenet", str(src), "--out", str(out), "--splits", "train",
                    "--shard-size", str(shard_size), "--resize", str(resize), "--workers", str(workers)],
                   check=True, cwd=ROOT)


def rate(batches: Iterator, batch_size: int, warmup: int, count: int) -> float:
    return count * batch_size / timed(batches, warmup, count)


def imagefolder_batches(src: Path, batch_size: int, workers: int) -> Iterator:
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    dataset = ImageFolder(str(src / "train"), transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, prefetch_factor=4 if workers else None)
    return endless(lambda _: loader)


def shard_batches(shards: Path | str, batch_size: int, workers: int) -> Iterator:
    loader = TrainLoader(open_source(str(shards)), batch_size, 224, num_workers=workers)
    return endless(loader.epoch_iter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, help="ImageFolder root with train/<synset>/ [generate one]")
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "loader_vs_imagefolder")
    parser.add_argument("--images", type=int, default=1200, help="Images to generate without --src.")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="Timed batches per loader.")
    parser.add_argument("--repeats", type=int, default=2,
                        help="Rounds over all loaders, alternating; the best rate of each counts "
                             "(a shared box's other load then biases no side).")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = parser.parse_args()

    src = args.src or args.work / "images"
    if args.src is None:
        write_images(src, args.images, classes=10)
    shard_size = max(1, min(100, args.images // (4 * max(args.workers, 1))))
    pack(src, args.work / "shards_default", 0, shard_size, args.workers)
    pack(src, args.work / "shards_resize256", 256, shard_size, args.workers)

    warmup = 2 * max(args.workers, 1)
    timing = (args.batch_size, warmup, args.batches)
    runs = {
        "imagefolder": lambda: imagefolder_batches(src, args.batch_size, args.workers),
        "shards_default": lambda: shard_batches(args.work / "shards_default", args.batch_size, args.workers),
        "shards_resize256": lambda: shard_batches(args.work / "shards_resize256", args.batch_size, args.workers),
    }
    results = {name: 0.0 for name in runs}
    for _ in range(max(1, args.repeats)):
        for name, batches in runs.items():
            results[name] = max(results[name], rate(batches(), *timing))
    per_worker = max(args.workers, 1)
    for name, value in results.items():
        print(f"{name:18s} {value:8.1f} images/s  ({value / per_worker:.1f} per worker)")
    ratio_default = results["shards_default"] / results["imagefolder"]
    ratio_256 = results["shards_resize256"] / results["imagefolder"]
    print(f"ratio (a) default-packed / ImageFolder: {ratio_default:.2f}×  (target ≥ 2)")
    print(f"ratio (b) resize-256 / ImageFolder:     {ratio_256:.2f}×  (target ≥ 3)")
    if args.json:
        print(json.dumps({"workers": args.workers, "batch_size": args.batch_size,
                          **{f"{k}_images_per_s": round(v, 1) for k, v in results.items()},
                          "ratio_default": round(ratio_default, 2), "ratio_resize256": round(ratio_256, 2),
                          "images_per_s": round(results["shards_default"], 1)}))


if __name__ == "__main__":
    main()
