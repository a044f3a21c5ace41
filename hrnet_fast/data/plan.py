"""Who reads what: shards → ranks × workers, batch counts, resume offsets. Pure functions.

Equal steps on every rank (no DDP hang) and across epochs (a fixed LR schedule) come from one
rule: each epoch the shards are permuted by (seed, epoch), identically on every rank, then dealt
largest-first to the currently lightest global worker (ties → lowest id). The loads this produces
depend only on the multiset of shard sizes, not on the permutation, so every epoch has the same
per-worker loads; every worker yields `min(loads) // batch_size` batches. The drop per epoch,
Σ(load − min load) + workers × (min load mod batch_size), stays below total workers ×
(batch_size + largest shard); with equal shards (as `pack` writes them) the first term is
(shards mod workers) × shard size.
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hrnet_fast.errors import UserError


@dataclass(frozen=True)
class TrainPlan:
    """One epoch: `shards[g]` are global worker g's shard indices, in reading order."""

    shards: list[list[int]]
    batches_per_worker: int
    dropped: int


def epoch_rng(seed: int, epoch: int, *stream: int) -> np.random.Generator:
    """A generator for one (seed, epoch, …) stream; independent of any global random state."""
    return np.random.default_rng([seed, epoch, *stream])


def deal(sizes: Sequence[int], order: Sequence[int], bins: int) -> tuple[list[list[int]], list[int]]:
    """Deal shards largest-first (ties in `order`) to the lightest bin; (shards per bin, loads)."""
    position = {shard: i for i, shard in enumerate(order)}
    ranked = sorted(order, key=lambda s: (-sizes[s], position[s]))
    heap = [(0, b) for b in range(bins)]
    assigned: list[list[int]] = [[] for _ in range(bins)]
    loads = [0] * bins
    for shard in ranked:
        load, b = heapq.heappop(heap)
        assigned[b].append(shard)
        loads[b] = load + sizes[shard]
        heapq.heappush(heap, (loads[b], b))
    for shards in assigned:  # read in permuted order, so the small shard is not always last
        shards.sort(key=position.__getitem__)
    return assigned, loads


def train_plan(sizes: Sequence[int], seed: int, epoch: int, world_size: int, workers: int,
               batch_size: int) -> TrainPlan:
    """The epoch's shard assignment and the batch count every global worker yields."""
    total_workers = world_size * workers
    if len(sizes) < total_workers:
        raise UserError(f"{len(sizes)} train shards cannot feed {world_size} rank(s) × {workers} "
                        f"worker(s) = {total_workers} readers: re-pack with a smaller --shard-size "
                        "(python -m pack imagenet SRC --shard-size N) or use fewer --workers")
    order = epoch_rng(seed, epoch).permutation(len(sizes)).tolist()
    shards, loads = deal(sizes, order, total_workers)
    batches = min(loads) // batch_size
    if batches < 1:
        raise UserError(f"a reader gets only {min(loads)} samples, less than one batch of {batch_size}: "
                        "lower --batch-size or --workers")
    return TrainPlan(shards, batches, sum(sizes) - batches * batch_size * total_workers)


def skipped_batches(skip: int, worker: int, workers: int) -> int:
    """How many of `worker`'s batches lie among a rank's first `skip` batches.

    The DataLoader takes batch i from worker i % workers (round robin), so worker w produced
    batches w, w + workers, … of them.
    """
    return max(skip - worker + workers - 1, 0) // workers


def val_segments(sizes: Sequence[int], exact: bool, parts: int) -> list[list[tuple[int, int, int]]]:
    """Each part's (shard, start, stop) sample ranges, covering every sample exactly once.

    With exact counts the global sample sequence is cut into `parts` contiguous, near-equal
    ranges; with estimated counts (foreign shards) positions are unreliable, so whole shards are
    dealt round robin.
    """
    if not exact:
        return [[(s, 0, sizes[s]) for s in range(p, len(sizes), parts)] for p in range(parts)]
    total = sum(sizes)
    bounds = [total * p // parts for p in range(parts + 1)]
    offsets = np.cumsum([0, *sizes]).tolist()
    segments: list[list[tuple[int, int, int]]] = []
    for lo, hi in zip(bounds, bounds[1:]):
        part = []
        for s, size in enumerate(sizes):
            start, stop = max(lo, offsets[s]), min(hi, offsets[s] + size)
            if start < stop:
                part.append((s, start - offsets[s], stop - offsets[s]))
        segments.append(part)
    return segments
