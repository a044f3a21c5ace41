"""`hrnet-fast bench loader`: images/s the shard loader delivers to the main process (CPU side)."""
from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator

import click

from hrnet_fast import log as logs

log = logs.get(__name__)


def endless(epoch_batches: Callable[[int], Iterable]) -> Iterator:
    """Epoch after epoch, so a long benchmark does not stop at an epoch's end."""
    for epoch in itertools.count():
        yield from epoch_batches(epoch)


def timed(batches: Iterator, warmup: int, count: int) -> float:
    """Seconds for `count` batches after `warmup` untimed ones (worker start-up, buffers filling)."""
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(count):
        next(batches)
    return time.perf_counter() - start


@click.command("loader")
@click.option("--shards", default="./shards", show_default=True,
              help="Packed directory, or a WebDataset URL / brace pattern (with --num-samples).")
@click.option("--num-samples", type=int, help="Total samples behind a shard URL (not for directories).")
@click.option("--split", type=click.Choice(["train", "val"]), default="train", show_default=True)
@click.option("--workers", type=int,
              help="DataLoader worker processes [as train: this rank's CPU cores - 1, at most 8].")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--batches", type=int, default=50, show_default=True, help="Timed batches.")
@click.option("--warmup", type=int, help="Untimed batches first [2 per worker].")
@click.option("--image-size", type=int, default=224, show_default=True)
@click.option("--shuffle-buffer", type=int, default=4096, show_default=True,
              help="Samples a worker shuffles together (as train's --shuffle-buffer).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def bench_loader(shards: str, num_samples: int | None, split: str, workers: int | None, batch_size: int,
                 batches: int, warmup: int | None, image_size: int, shuffle_buffer: int,
                 as_json: bool) -> None:
    """Iterate the train (or val) loader and print images/s, in total and per worker."""
    from hrnet_fast.data import TrainLoader, ValLoader, open_source
    from hrnet_fast.data.decode import jpeg_decoder
    from hrnet_fast.host import default_workers

    workers = default_workers() if workers is None else workers
    source = open_source(shards, split, num_samples)
    warmup = 2 * max(workers, 1) if warmup is None else warmup
    loader: TrainLoader | ValLoader
    if split == "train":
        train_loader = TrainLoader(source, batch_size, image_size, num_workers=workers, shuffle_buffer=shuffle_buffer)
        log.info(train_loader.describe_plan())
        loader, stream = train_loader, endless(train_loader.epoch_iter)
        extra = {"plan": train_loader.plan_name, "dropped_per_epoch": train_loader.dropped_per_epoch}
    else:
        val_loader = ValLoader(source, batch_size, image_size, num_workers=workers)
        loader, stream, extra = val_loader, endless(lambda _: val_loader), {}
    seconds = timed(stream, warmup, batches)
    rate = batches * batch_size / seconds
    stats = loader.stats
    log.info(f"{split} loader, {workers} workers, batch {batch_size}, {image_size}px: {rate:.1f} images/s "
             f"({rate / max(workers, 1):.1f} per worker) over {batches} batches in {seconds:.2f} s; "
             f"corrupt {stats.corrupt}, lost {stats.lost}, repeated {stats.repeated}; JPEG decode: {jpeg_decoder()}")
    if as_json:
        log.info(json.dumps({"split": split, "workers": workers, "batch_size": batch_size,
                             "image_size": image_size, "batches": batches, "seconds": round(seconds, 3),
                             "images_per_s": round(rate, 2),
                             "images_per_s_per_worker": round(rate / max(workers, 1), 2),
                             "decoder": jpeg_decoder(), **extra}))
