"""One peer loader's training throughput, for benchmarks/loader_vs_peers.py: one JSON line.

Why a script of its own: FFCV and DALI live in benchmarks/peers/.venv (setup.sh), apart from
.venv's pillow-simd and pins, so the comparison runs each peer as a subprocess. Every peer does
the same work as hrnet-fast's TrainLoader: RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3))
+ random horizontal flip, from JPEG bytes to a uint8 batch on the CPU (no float, no normalize),
with `--workers` workers, and whole batches are timed after a warm-up.

    run_peer.py --peer ffcv|dali|torchvision --folder IMAGEFOLDER --shards SHARD_DIR --work DIR
                [--workers N] [--batch 256] [--rounds R] [--images-per-round M]
    run_peer.py --check --peer NAME     # a tiny run on generated photos; prints the peer's version

- ffcv: a .beton written once into --work from the ImageFolder (RGBImageField write_mode="jpg",
  jpeg_quality=90: FFCV decodes each file and re-encodes it with OpenCV), read with
  RandomResizedCropRGBImageDecoder, RandomHorizontalFlip, ToTensor; OrderOption.RANDOM,
  os_cache=True, num_workers=N (FFCV's workers are threads).
- dali: fn.readers.webdataset on our own shards (train-*.tar, fields jpg and cls; DALI shuffles
  within a buffer), fn.decoders.image_random_crop on the CPU, fn.resize to 224x224, fn.flip
  with a coin flip; num_threads=N, device_id=None (CPU only).
- torchvision: ImageFolder + DataLoader(num_workers=N, shuffle, persistent workers) with
  RandomResizedCrop + RandomHorizontalFlip + PILToTensor; PIL is whichever the running venv has
  (stock Pillow here, pillow-simd when .venv's python runs this file).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import math
import os
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from hrnet_fast.commands.bench_loader import endless, timed  # noqa: E402

PEERS = ("ffcv", "dali", "torchvision")
SIZE = 224
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
FFCV_QUALITY = 90


def version(peer: str) -> str:
    """The installed distribution's version (DALI's wheel is named for its CUDA build)."""
    dist = {"ffcv": "ffcv", "dali": "nvidia-dali-cuda120", "torchvision": "torchvision"}[peer]
    return importlib.metadata.version(dist)


def ffcv_batches(folder: Path, work: Path, batch: int, workers: int, repeat: int = 1) -> Iterator:
    """FFCV's ImageNet-example pipeline, from a .beton cached in `work` (named after the folder)."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor
    from ffcv.writer import DatasetWriter
    from torchvision.datasets import ImageFolder

    beton = work / f"{folder.name}-q{FFCV_QUALITY}.beton"
    if not beton.exists():
        work.mkdir(parents=True, exist_ok=True)
        partial = beton.with_suffix(".partial")
        fields = {"image": RGBImageField(write_mode="jpg", jpeg_quality=FFCV_QUALITY), "label": IntField()}
        DatasetWriter(str(partial), fields, num_workers=len(os.sched_getaffinity(0))).from_indexed_dataset(
            ImageFolder(str(folder / "train")))
        partial.rename(beton)
    pipelines = {"image": [RandomResizedCropRGBImageDecoder((SIZE, SIZE), scale=SCALE, ratio=RATIO),
                           RandomHorizontalFlip(), ToTensor()],
                 "label": [IntDecoder(), ToTensor()]}
    import numpy as np

    count = len(ImageFolder(str(folder / "train")))
    loader = Loader(str(beton), batch_size=batch, num_workers=max(workers, 1), order=OrderOption.RANDOM,
                    os_cache=True, drop_last=True, pipelines=pipelines, indices=np.tile(np.arange(count), repeat))
    return endless(lambda _: loader)


def dali_batches(shards: Path, batch: int, workers: int, repeat: int = 1) -> Iterator:
    """DALI's CPU operators on our tar shards; the reader wraps around, so the stream is endless."""
    import numpy as np
    from nvidia.dali import fn, pipeline_def, types

    tars = sorted(str(p) for p in shards.glob("train-*.tar")) * repeat
    if not tars:
        raise SystemExit(f"no train-*.tar in {shards}")

    @pipeline_def(batch_size=batch, num_threads=max(workers, 1), device_id=None, seed=0)
    def pipeline() -> tuple[Any, Any]:  # DALI's graph nodes
        jpegs, labels = fn.readers.webdataset(paths=tars, ext=["jpg", "cls"], random_shuffle=True,
                                              missing_component_behavior="error", name="reader")
        images = fn.decoders.image_random_crop(jpegs, device="cpu", output_type=types.RGB,
                                               random_area=list(SCALE), random_aspect_ratio=list(RATIO),
                                               num_attempts=10)
        images = fn.resize(images, resize_x=SIZE, resize_y=SIZE)
        images = fn.flip(images, horizontal=fn.random.coin_flip())
        return images, labels

    pipe = pipeline()
    pipe.build()

    def stream() -> Iterator:
        while True:
            images, labels = pipe.run()
            yield np.asarray(images.as_tensor()), labels  # one dense uint8 NHWC array

    return stream()


def torchvision_batches(folder: Path, batch: int, workers: int, repeat: int = 1) -> Iterator:
    """The reference recipe's augmentation, as uint8 (PILToTensor: no float, no normalize)."""
    import torch
    import torchvision.transforms as T
    from torchvision.datasets import ImageFolder

    transform = T.Compose([T.RandomResizedCrop(SIZE, scale=SCALE, ratio=RATIO), T.RandomHorizontalFlip(),
                           T.PILToTensor()])
    folder_set = ImageFolder(str(folder / "train"), transform)
    dataset = torch.utils.data.ConcatDataset([folder_set] * repeat)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    return endless(lambda _: loader)


def batches_for(peer: str, args: argparse.Namespace) -> Iterator:
    makers: dict[str, Callable[[], Iterator]] = {
        "ffcv": lambda: ffcv_batches(args.folder, args.work / "ffcv", args.batch, args.workers, args.epoch_repeat),
        "dali": lambda: dali_batches(args.shards, args.batch, args.workers, args.epoch_repeat),
        "torchvision": lambda: torchvision_batches(args.folder, args.batch, args.workers, args.epoch_repeat),
    }
    return makers[peer]()


def batches_per_round(images_per_round: int, batch: int) -> int:
    """Whole batches only: at least `images_per_round` images, at least one batch."""
    return max(1, math.ceil(images_per_round / batch))


def default_warmup(workers: int) -> int:
    """Untimed batches first: every worker started and past its first batch (2 per worker, at least 2)."""
    return max(2, 2 * workers)


def measure(batches: Iterator, batch: int, rounds: int, images_per_round: int, warmup: int) -> list[float]:
    """images/s of each round: `warmup` untimed batches once (threads, JIT, caches), then rounds
    of whole batches back to back."""
    count = batches_per_round(images_per_round, batch)
    return [count * batch / timed(batches, warmup if i == 0 else 0, count) for i in range(rounds)]


def write_check_data(root: Path, images: int = 16) -> None:
    """A few small photos as an ImageFolder and as one shard in our layout (KEY.jpg + KEY.cls)."""
    import numpy as np
    from imagegen import encode, photo_like

    rng = np.random.default_rng(0)
    (root / "shards").mkdir(parents=True)
    with tarfile.open(root / "shards" / "train-000000.tar", "w") as tar:
        for i in range(images):
            synset = f"n{i % 2:08d}"
            data = encode(photo_like(120, 90, rng), quality=90)
            path = root / "images" / "train" / synset / f"{synset}_{i}.JPEG"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            for ext, payload in (("jpg", data), ("cls", str(i % 2).encode())):
                info = tarfile.TarInfo(f"{synset}_{i}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def check(peer: str) -> None:
    """Install check for setup.sh: two batches of 4 through the real pipeline, shape and dtype checked."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_check_data(root)
        args = argparse.Namespace(folder=root / "images", shards=root / "shards", work=root, batch=4, workers=1)
        batches = batches_for(peer, args)
        for _ in range(2):
            images = next(batches)[0]
            shape, dtype = tuple(images.shape), str(images.dtype)
            if dtype not in ("uint8", "torch.uint8") or sorted(shape) != sorted((4, SIZE, SIZE, 3)):
                raise SystemExit(f"{peer}: got a {dtype} batch of shape {shape}, not uint8 4x{SIZE}x{SIZE}x3")
    print(version(peer))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=PEERS, required=True)
    parser.add_argument("--check", action="store_true", help="A tiny run on generated photos; prints the version.")
    parser.add_argument("--folder", type=Path, help="ImageFolder root holding train/<synset>/ (ffcv, torchvision).")
    parser.add_argument("--shards", type=Path, help="Our shard directory with train-*.tar (dali).")
    parser.add_argument("--work", type=Path, help="Where FFCV's .beton files are cached.")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epoch-repeat", type=int, default=1,
                        help="Each epoch visits the photos this many times (epoch length, as ImageNet's is long).")
    parser.add_argument("--images-per-round", type=int, default=4096)
    parser.add_argument("--warmup", type=int, help="Untimed batches before the first round [2 per worker, at least 2].")
    args = parser.parse_args(argv)
    if not args.check:
        needed = {"ffcv": ("folder", "work"), "dali": ("shards",), "torchvision": ("folder",)}[args.peer]
        missing = [f"--{name}" for name in needed if getattr(args, name) is None]
        if missing:
            parser.error(f"--peer {args.peer} needs {' and '.join(missing)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # FFCV's workers are numba threads; numba's pool is sized once, at import.
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(args.workers, 1)))
    if args.check:
        check(args.peer)
        return
    import PIL

    warmup = default_warmup(args.workers) if args.warmup is None else args.warmup
    rates = measure(batches_for(args.peer, args), args.batch, args.rounds, args.images_per_round, warmup)
    print(json.dumps({"peer": args.peer, "version": version(args.peer), "pillow": PIL.__version__,
                      "workers": args.workers, "batch": args.batch, "images_per_s": [round(r, 1) for r in rates]}),
          flush=True)
    # FFCV's and DALI's threads can outlive the stream and keep the process alive.
    os._exit(0)


if __name__ == "__main__":
    main()
