"""Who reads what: samples → ranks × workers, batch counts, resume offsets. Pure functions.

Two plans; a source uses the first its shards allow (TrainLoader.plan_name says which):

`sample-ranges` (every shard has a sample index, hrnet_fast.shardformat.index): each epoch the
shards are cut into blocks of BLOCK consecutive samples (a block never crosses a shard's end),
the blocks are permuted by (seed, epoch) identically on every rank, and the permuted blocks form
one global sample sequence P. With R ranks and batch b, every rank runs N // (b·R) steps, every
epoch (a fixed LR schedule, no DDP hang); rank r's step s is P[(s·R + r)·b : (s·R + r + 1)·b],
so only the last < b·R samples of P are dropped, and any number of shards feeds any number of
ranks × workers. On a rank, step s is served by DataLoader worker s % W (its round robin); a
worker may optionally shuffle the samples of K of its consecutive batches (a window) among them.

`whole-shards` (the fallback for shards without an index: `pipe:`/http URLs, gzipped tars):
each epoch the shards are permuted by (seed, epoch), identically on every rank, then dealt
largest-first to the currently lightest global worker (ties → lowest id). The loads this
produces depend only on the multiset of shard sizes, not on the permutation, so every epoch has
the same per-worker loads; every worker yields `min(loads) // batch_size` batches. The drop per
epoch, Σ(load − min load) + workers × (min load mod batch_size), stays below total workers ×
(batch_size + largest shard); it needs at least one shard per reader.
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
        raise UserError(f"{len(sizes)} train shards without a sample index cannot feed {world_size} rank(s) × "
                        f"{workers} worker(s) = {total_workers} readers: copy them to local .tar files (they get "
                        "an index on first open), re-pack with a smaller --shard-size, or use fewer --workers")
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


BLOCK = 16
"""Samples per block of the sample-ranges plan. Why 16: a batch of 256 then takes ~17 reads of
~16 consecutive samples (~1.8 MB at ImageNet's ~110 kB per image), few enough that seek and
request latency vanish next to decoding 256 images, even on network storage; and `pack`
shuffles train samples globally before sharding, so 16 consecutive packed samples are already
a random draw: blocks cost packed data no mixing. Class-sorted foreign shards are another
matter (a block is then mostly one class): there the per-worker window shuffle restores most of
the mixing. benchmarks/shuffle_quality.py (128k samples, 1000 classes, class-sorted shards of
1250, batch 256, 8 workers) measures distinct classes per batch: random permutation 226, this
block with a 16-batch window 156, without a window 19, the whole-shard plan with a 4096-sample
buffer 69; on packed shards every variant gives 226."""


@dataclass(frozen=True, eq=False)
class SamplePlan:
    """One epoch's global sample sequence P, as blocks in epoch order: block i is samples
    [starts[i], starts[i] + length) of shard `shards[i]`, and P positions [ends[i-1], ends[i])."""

    shards: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    steps: int  # per rank, every epoch
    dropped: int  # samples of P left out (over all ranks): fewer than batch_size × world_size


@dataclass(frozen=True)
class Window:
    """Consecutive batches of one (logical) DataLoader worker whose samples are shuffled together:
    `steps` in order, the first `skip` of them already done before a resume."""

    worker: int
    index: int
    steps: list[int]
    skip: int


def blocks(sizes: Sequence[int], block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shard, first sample, length) of every block, shard by shard; no block crosses a shard's end."""
    sizes_ = np.asarray(sizes, np.int64)
    counts = -(-sizes_ // block)
    shard = np.repeat(np.arange(len(sizes_)), counts)
    first_block = np.cumsum(counts) - counts
    starts = (np.arange(len(shard)) - np.repeat(first_block, counts)) * block
    return shard, starts, np.minimum(block, sizes_[shard] - starts)


def sample_plan(sizes: Sequence[int], seed: int, epoch: int, world_size: int, batch_size: int,
                block: int = BLOCK) -> SamplePlan:
    """The epoch's block order and the step count every rank runs (see the module docstring)."""
    total = int(sum(sizes))
    steps = total // (batch_size * world_size)
    if steps < 1:
        raise UserError(f"{total} train samples make no batch of {batch_size} on each of {world_size} "
                        "rank(s): lower --batch-size")
    shard, starts, lengths = blocks(sizes, block)
    order = epoch_rng(seed, epoch).permutation(len(shard))
    return SamplePlan(shard[order], starts[order], np.cumsum(lengths[order]), steps,
                      total - steps * batch_size * world_size)


def step_span(step: int, rank: int, world_size: int, batch_size: int) -> tuple[int, int]:
    """[lo, hi) of P that rank `rank` trains on at `step`."""
    lo = (step * world_size + rank) * batch_size
    return lo, lo + batch_size


def pieces(plan: SamplePlan, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """P[lo:hi] as (shard, start, stop) sample ranges, in order: one per block it touches."""
    i = int(np.searchsorted(plan.ends, lo, side="right"))
    ranges = []
    while lo < hi:
        begin, end = (int(plan.ends[i - 1]) if i else 0), int(plan.ends[i])
        first = int(plan.starts[i]) - begin
        ranges.append((int(plan.shards[i]), first + lo, first + min(hi, end)))
        lo, i = min(hi, end), i + 1
    return ranges


def logical_worker(worker: int, workers: int, skip: int, turn: int = 0) -> int:
    """The worker of a full epoch whose batches DataLoader worker `worker` serves.

    The DataLoader asks workers in turn, and asks worker `turn` for the epoch's first batch (step
    `skip`; turn 0 for a fresh DataLoader, later for a series that runs on from the last epoch,
    see series.py), so worker w serves steps skip + (w - turn) % workers, then every
    `workers`-th: those of logical worker (w - turn + skip) % workers, whose j-th batch is step
    logical + j·workers in every run.
    """
    return (worker - turn + skip) % workers


def worker_windows(steps: int, skip: int, worker: int, workers: int, window: int, turn: int = 0) -> list[Window]:
    """The windows DataLoader worker `worker` serves when its rank starts at step `skip` and the
    DataLoader asks worker `turn` first (`logical_worker`).

    Windows are cut from the logical worker's batches, so a resumed run shuffles exactly as the
    full one; the windows before `skip` are left out by plan and the one holding it is read and
    its done batches dropped, never decoded.
    """
    logical = logical_worker(worker, workers, skip, turn)
    own = list(range(logical, steps, workers))
    done = skipped_batches(skip, logical, workers)
    windows = []
    for k, start in enumerate(range(0, len(own), window)):
        steps_in = own[start:start + window]
        if start + len(steps_in) > done:
            windows.append(Window(logical, k, steps_in, max(done - start, 0)))
    return windows


WINDOW_STREAM = 2  # epoch_rng sub-stream of the window shuffle (the streams use 0 and 1)


def window_pieces(plan: SamplePlan, window: Window, rank: int, world_size: int,
                  batch_size: int) -> list[tuple[int, int, int]]:
    """The (shard, start, stop) ranges of all the window's batches, in step order."""
    return [piece for step in window.steps
            for piece in pieces(plan, *step_span(step, rank, world_size, batch_size))]


def window_order(seed: int, epoch: int, rank: int, window: Window, count: int) -> np.ndarray:
    """How the window's `count` samples are shuffled among its batches: keyed by (seed, epoch,
    rank, logical worker, window), so a resumed run shuffles as the full one did."""
    return epoch_rng(seed, epoch, WINDOW_STREAM, rank, window.worker, window.index).permutation(count)


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
