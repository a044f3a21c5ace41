"""How well each train plan mixes classes: measured on labels alone, without decoding an image.

Why: the sample-ranges plan reads blocks of consecutive samples (plan.BLOCK) so that readers can
share shards; on shards whose samples are sorted by class (as many foreign datasets are) a block
is then mostly one class. This puts numbers on it, for one rank's epoch of batches, against the
old whole-shard plan (shard permutation + per-worker shuffle buffer) and a true random
permutation: distinct classes per batch (mean and 5th percentile), the lag-1 autocorrelation of
the label sequence, and how many sample pairs that share a batch in epoch 0 share one again in
epoch 1 (blocks keep their samples together across epochs; the window shuffle breaks that up).
The plans are the loader's own pure functions (hrnet_fast.data.plan and the buffer of stream.py).

    python benchmarks/shuffle_quality.py [--samples 128000] [--classes 1000] [--shard-size 1250]
        [--batch-size 256] [--workers 8] [--buffer 4096] [--blocks 1,4,16,64] [--packed] [--json]

Without --packed the shards are class-sorted (the hard case); with it the samples are shuffled
before sharding, as `python -m pack` does.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hrnet_fast.data.plan import (  # noqa: E402
    epoch_rng,
    sample_plan,
    train_plan,
    window_order,
    window_pieces,
    worker_windows,
)
from hrnet_fast.data.stream import SHUFFLE_STREAM, shuffled  # noqa: E402


def shard_sizes(samples: int, shard_size: int) -> list[int]:
    return [min(shard_size, samples - start) for start in range(0, samples, shard_size)]


def whole_shard_batches(sizes: list[int], epoch: int, batch_size: int, workers: int, buffer: int) -> np.ndarray:
    """[steps, batch] sample ids of the whole-shard plan on one rank, steps in DataLoader order."""
    plan = train_plan(sizes, 0, epoch, 1, workers, batch_size)
    first = np.cumsum([0, *sizes])
    per_worker = []
    for worker, shards in enumerate(plan.shards):
        ids = (i for shard in shards for i in range(first[shard], first[shard + 1]))
        stream = np.fromiter(shuffled(ids, buffer, epoch_rng(0, epoch, worker, SHUFFLE_STREAM)), np.int64)
        per_worker.append(stream[:plan.batches_per_worker * batch_size].reshape(-1, batch_size))
    return np.stack(per_worker, axis=1).reshape(-1, batch_size)  # step s from worker s % W


def sample_range_batches(sizes: list[int], epoch: int, batch_size: int, workers: int, block: int,
                         window: int) -> np.ndarray:
    """[steps, batch] sample ids of the sample-ranges plan on one rank, with a window of `window` batches."""
    plan = sample_plan(sizes, 0, epoch, 1, batch_size, block)
    first = np.cumsum([0, *sizes])
    batches = np.empty((plan.steps, batch_size), np.int64)
    for worker in range(workers):
        for win in worker_windows(plan.steps, 0, worker, workers, window):
            ids = np.concatenate([np.arange(first[s] + a, first[s] + b)
                                  for s, a, b in window_pieces(plan, win, 0, 1, batch_size)])
            if window > 1:
                ids = ids[window_order(0, epoch, 0, win, len(ids))]
            batches[win.steps] = ids.reshape(-1, batch_size)
    return batches


def random_batches(sizes: list[int], epoch: int, batch_size: int) -> np.ndarray:
    total = sum(sizes)
    order = np.random.default_rng([1, epoch]).permutation(total)
    return order[:total // batch_size * batch_size].reshape(-1, batch_size)


def repeated_pairs(first: np.ndarray, second: np.ndarray, samples: int) -> float:
    """Of the sample pairs sharing a batch in `first`, the share that shares one in `second` too."""
    batch_of = np.full(samples, -1, np.int64)
    batch_of[second.ravel()] = np.repeat(np.arange(len(second)), second.shape[1])
    pairs = together = 0
    for batch in first:
        _, counts = np.unique(batch_of[batch], return_counts=True)
        together += int((counts * (counts - 1) // 2).sum())
        pairs += len(batch) * (len(batch) - 1) // 2
    return together / pairs


def measure(batches: Callable[[int], np.ndarray], labels: np.ndarray) -> dict[str, float]:
    epoch0, epoch1 = batches(0), batches(1)
    classes = np.array([len(np.unique(labels[b])) for b in epoch0])
    sequence = labels[epoch0.ravel()].astype(np.float64)
    return {"classes_mean": round(float(classes.mean()), 1), "classes_p5": round(float(np.percentile(classes, 5)), 1),
            "autocorr_lag1": round(float(np.corrcoef(sequence[:-1], sequence[1:])[0, 1]), 3),
            "pairs_again": round(repeated_pairs(epoch0, epoch1, len(labels)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=128000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=1250)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the one rank measured.")
    parser.add_argument("--buffer", type=int, default=4096,
                        help="--shuffle-buffer: the old plan's buffer; the window is buffer // batch size batches.")
    parser.add_argument("--blocks", default="1,4,16,64", help="Comma-separated block sizes to measure.")
    parser.add_argument("--packed", action="store_true", help="Shuffle samples before sharding, as pack does.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = parser.parse_args()

    labels = np.arange(args.samples) * args.classes // args.samples  # class-sorted
    if args.packed:
        labels = labels[np.random.default_rng(2).permutation(args.samples)]
    sizes, bs, workers = shard_sizes(args.samples, args.shard_size), args.batch_size, args.workers
    window = max(1, args.buffer // bs)
    rows = {f"whole-shards, buffer {args.buffer}": lambda e: whole_shard_batches(sizes, e, bs, workers, args.buffer)}
    for block in (int(b) for b in args.blocks.split(",")):
        for win in sorted({1, window}):
            name = f"sample-ranges, block {block}, " + (f"window {win}" if win > 1 else "no window")
            rows[name] = lambda e, block=block, win=win: sample_range_batches(sizes, e, bs, workers, block, win)
    rows["random permutation"] = lambda e: random_batches(sizes, e, bs)
    results = {name: measure(batches, labels) for name, batches in rows.items()}

    kind = "packed (shuffled before sharding)" if args.packed else "class-sorted"
    print(f"{args.samples} samples, {args.classes} classes, {kind} shards of {args.shard_size}; "
          f"batch {bs}, 1 rank × {workers} workers")
    header = f"{'plan':42s} {'classes/batch':>13s} {'p5':>6s} {'autocorr':>9s} {'pairs again':>12s}"
    print(header + "\n" + "-" * len(header))
    for name, r in results.items():
        print(f"{name:42s} {r['classes_mean']:13.1f} {r['classes_p5']:6.1f} {r['autocorr_lag1']:9.3f} "
              f"{r['pairs_again']:12.4f}")
    if args.json:
        print(json.dumps({"samples": args.samples, "classes": args.classes, "packed": args.packed,
                          "batch_size": bs, "workers": workers, "results": results}))


if __name__ == "__main__":
    main()
