"""TrainLoader / ValLoader: one rank's view of a split, as a torch DataLoader over our streams.

This is the main-process side: it plans the epoch, starts the DataLoader, adds up the faults
each batch reports and stops the run with a UserError once they pass `max_bad_fraction`, so
damaged data is never a hang and never a silent shortfall.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, IterableDataset

from hrnet_fast.data.decode import TRAIN_SCALE
from hrnet_fast.data.plan import BLOCK, SamplePlan, TrainPlan, sample_plan, train_plan, val_segments
from hrnet_fast.data.ranges import RangeStream
from hrnet_fast.data.reader import Faults
from hrnet_fast.data.ring import BatchRing
from hrnet_fast.data.series import EpochSeries, Series
from hrnet_fast.data.source import ShardSource
from hrnet_fast.data.stream import TrainStream, ValStream, WorkerBatch
from hrnet_fast.data.workers import dataloader_options, sigterm_held
from hrnet_fast.errors import UserError


def check_args(batch_size: int, image_size: int, rank: int, world_size: int, num_workers: int) -> None:
    """Arguments a flag or a launcher got wrong, as UserErrors before any worker starts."""
    if batch_size < 1 or image_size < 1:
        raise UserError(f"batch size ({batch_size}) and image size ({image_size}) must be at least 1")
    if num_workers < 0:
        raise UserError(f"--workers {num_workers}: use 0 (load in the main process) or more")
    if not 0 <= rank < world_size:
        raise UserError(f"rank {rank} is outside world size {world_size}: check the launcher's RANK/WORLD_SIZE")


TRAIN_PREFETCH = 4  # train batches each worker keeps ready


def worker_batches(dataset: IterableDataset, num_workers: int, pin_memory: bool | str,
                   prefetch_factor: int, ring: BatchRing | None = None) -> Iterator[WorkerBatch]:
    """The dataset's WorkerBatches through a DataLoader (batch_size=None: workers batch).

    `pin_memory`: True pins for CUDA; a device type ("npu") pins for that device, which older
    torch would otherwise skip without a word when CUDA is absent. `ring`: the BatchRing the
    workers build train batches in; each arriving batch's buffer is tracked until released."""
    pin_device = pin_memory if isinstance(pin_memory, str) else ""  # "": DataLoader's default, no device
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=bool(pin_memory),
                        prefetch_factor=prefetch_factor if num_workers else None, pin_memory_device=pin_device,
                        **dataloader_options(num_workers))
    with sigterm_held():  # the workers start here (see workers.py)
        batches = iter(loader)
    for fields, faults, fatal, slot in batches:
        if ring is not None and fields:
            ring.track(slot, fields[0])
        yield WorkerBatch(tuple(fields), faults, fatal, slot)


def checked(batches: Iterator[WorkerBatch], stats: Faults, limit: float, what: str) -> Iterator[tuple]:
    """The batch fields, after adding each batch's faults to `stats` and enforcing `limit`."""
    for fields, faults, fatal, _slot in batches:
        stats.add(faults)
        if fatal:
            raise UserError(fatal)
        if stats.total() > limit:
            raise UserError(f"{what}: {stats.corrupt} corrupt, {stats.lost} lost (shards: "
                            f"{', '.join(stats.bad_shards) or 'none'}) and {stats.repeated} repeated samples "
                            f"exceed the limit of {int(limit)}: run `python -m pack verify DIR` and re-pack, "
                            "or raise max_bad_fraction")
        yield fields


@dataclass(frozen=True)
class RankStreams:
    """How one rank's epochs are planned and read: all a worker needs to build any epoch's stream
    by itself (a series runs epoch after epoch in the same workers; spawned ones get a copy)."""

    source: ShardSource
    batch_size: int
    rank: int
    world_size: int
    readers: int
    seed: int
    shuffle_buffer: int
    window: int
    with_keys: bool
    crop_scale: tuple[float, float]
    hflip: bool
    block: int

    def plan(self, epoch: int) -> SamplePlan | TrainPlan:
        """The epoch's plan for all ranks (identical on every rank)."""
        if self.source.indexed:
            return sample_plan(self.source.shard_sizes, self.seed, epoch, self.world_size, self.batch_size,
                               self.block)
        return train_plan(self.source.shard_sizes, self.seed, epoch, self.world_size, self.readers,
                          self.batch_size)

    def stream(self, epoch: int, skip: int, size: int, ring: BatchRing | None) -> RangeStream | TrainStream:
        """The rank's batches of `epoch` from batch `skip` on, cropped to `size`, built in `ring`."""
        plan = self.plan(epoch)
        if isinstance(plan, SamplePlan):
            return RangeStream(self.source, plan, epoch, self.seed, self.rank, self.world_size, self.batch_size,
                               size, self.window, skip, self.with_keys, self.crop_scale, self.hflip, ring)
        return TrainStream(self.source, plan.shards, plan.batches_per_worker, epoch, self.seed, self.rank,
                           self.batch_size, size, self.shuffle_buffer, skip, self.with_keys, self.crop_scale,
                           self.hflip, ring)


class TrainLoader:
    """Training batches for one rank: `epoch_iter(epoch)` yields exactly `batches_per_epoch` of
    (images uint8 [B, S, S, 3], labels int64 [B]) — plus keys (list[str]) with `with_keys`.

    Indexed shards get the sample-ranges plan, others the whole-shard plan (plan.py);
    `plan_name` says which and `describe_plan()` how it shuffles. `shuffle_buffer` is the
    samples a worker holds to shuffle: the whole-shard plan's buffer, or the sample-ranges
    plan's window of shuffle_buffer // batch_size batches (1: no window shuffle).

    The workers outlive epochs (series.py): consecutive epoch_iter calls at one image size run
    in the same workers, which start on the next epoch while this one's last batches are used.
    `epochs`: the run's epoch count, so they stop after the last one (None: they go on until
    `close()` or the loader goes)."""

    def __init__(self, source: ShardSource, batch_size: int, image_size: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 2, seed: int = 0, shuffle_buffer: int = 4096,
                 pin_memory: bool | str = False, prefetch_factor: int = TRAIN_PREFETCH, max_bad_fraction: float = 0.01,
                 with_keys: bool = False, crop_scale: tuple[float, float] = TRAIN_SCALE,
                 hflip: bool = True, block: int = BLOCK, epochs: int | None = None) -> None:
        check_args(batch_size, image_size, rank, world_size, num_workers)
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise UserError(f"crop scale {crop_scale} must satisfy 0 < min <= max <= 1")
        if block < 1:
            raise UserError(f"block {block} must be at least 1 sample")
        self.crop_scale, self.hflip, self.block = crop_scale, hflip, block
        self.source, self.batch_size, self.image_size = source, batch_size, image_size
        self.rank, self.world_size, self.num_workers, self.seed = rank, world_size, num_workers, seed
        self.shuffle_buffer, self.pin_memory, self.prefetch_factor = max(1, shuffle_buffer), pin_memory, prefetch_factor
        self.window = max(1, shuffle_buffer // batch_size)
        self.max_bad_fraction, self.with_keys, self.epochs = max_bad_fraction, with_keys, epochs
        self.readers = max(num_workers, 1)  # num_workers=0: the main process is the one reader
        self.plan_name = "sample-ranges" if source.indexed else "whole-shards"
        self.streams = RankStreams(source, batch_size, rank, world_size, self.readers, seed, self.shuffle_buffer,
                                   self.window, with_keys, crop_scale, hflip, block)
        first = self.plan(0)
        if isinstance(first, SamplePlan):
            self.batches_per_epoch = first.steps
        else:
            self.batches_per_epoch = first.batches_per_worker * self.readers
        self.dropped_per_epoch = first.dropped
        self.stats = Faults()
        self.ring: BatchRing | None = None  # the running series' ring, for benchmarks and tests
        self._series: Series | None = None
        self._series_size = 0

    def plan(self, epoch: int) -> SamplePlan | TrainPlan:
        """The epoch's plan for all ranks (identical on every rank)."""
        return self.streams.plan(epoch)

    def describe_plan(self) -> str:
        """One line for the logs: which plan, and how it mixes samples."""
        if self.source.indexed:
            per_worker = -(-self.batches_per_epoch // self.readers)
            reach = min(self.window, per_worker)
            window = f"a window of {reach} batches shuffled per worker" if reach > 1 else "no window shuffle"
            return f"plan sample-ranges: blocks of {self.block} samples permuted per epoch, {window}"
        return (f"plan whole-shards (shards without a sample index): shards permuted per epoch, "
                f"a shuffle buffer of {self.shuffle_buffer} samples per worker")

    def epoch_iter(self, epoch: int, skip_batches: int = 0, image_size: int | None = None) -> Iterator[tuple]:
        """This rank's batches of `epoch` from batch `skip_batches` on (to resume mid-epoch), cropped
        to `image_size` (progressive resizing; None: the loader's).

        The batches are the same whether the workers run on from the previous call or start
        here: they do where the call continues the last one (the next epoch, or the rest of an
        epoch left unfinished) at the same size. Skipped batches are never decoded. `stats`
        restarts at zero and holds the epoch's faults so far.
        """
        if not 0 <= skip_batches <= self.batches_per_epoch:
            raise UserError(f"cannot skip {skip_batches} batches of an epoch of {self.batches_per_epoch}")
        size = self.image_size if image_size is None else image_size
        check_args(self.batch_size, size, self.rank, self.world_size, self.num_workers)
        series = self._series
        if series is None or size != self._series_size or not series.continues(epoch, skip_batches):
            series = self._start(epoch, skip_batches, size)
        self.stats = Faults()
        limit = self.max_bad_fraction * self.batches_per_epoch * self.batch_size
        return checked(series.take(), self.stats, limit, f"train epoch {epoch}, rank {self.rank}")

    def _start(self, epoch: int, skip_batches: int, size: int) -> Series:
        """A new series of epochs from (epoch, skip_batches), in workers of its own."""
        self.close()
        # A ring per series, made before its workers fork: a buffer per batch a worker may have
        # in flight (prefetch_factor) plus two the consumer may hold.
        self.ring = BatchRing((self.batch_size, size, size, 3), self.readers, self.prefetch_factor + 2)
        stop = None if self.epochs is None else max(self.epochs, epoch + 1)
        stream_at = functools.partial(self.streams.stream, size=size, ring=self.ring)
        dataset = EpochSeries(stream_at, epoch, skip_batches, self.batches_per_epoch, stop)
        batches = worker_batches(dataset, self.num_workers, self.pin_memory, self.prefetch_factor, self.ring)
        self._series = Series(batches, epoch, skip_batches, self.batches_per_epoch, stop)
        self._series_size = size
        return self._series

    def close(self) -> None:
        """Stop the workers now rather than when the loader goes (e.g. before a final evaluation)."""
        if self._series is not None:
            self._series.close()
            self._series = None


class ValLoader:
    """Eval batches for one rank: (images uint8 [B, S, S, 3], labels int64 [B], mask bool [B],
    keys list[str]); every sample appears once over all ranks, padding has mask False and key ""."""

    def __init__(self, source: ShardSource, batch_size: int, image_size: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 2, crop_ratio: float = 0.875,
                 pin_memory: bool | str = False, prefetch_factor: int = 2, max_bad_fraction: float = 0.01) -> None:
        check_args(batch_size, image_size, rank, world_size, num_workers)
        if not 0 < crop_ratio <= 1:
            raise UserError(f"crop ratio {crop_ratio} must be in (0, 1]: 0.875 resizes 224 crops from 256")
        self.source, self.batch_size, self.image_size, self.crop_ratio = source, batch_size, image_size, crop_ratio
        self.rank, self.num_workers, self.pin_memory = rank, num_workers, pin_memory
        self.prefetch_factor, self.max_bad_fraction = prefetch_factor, max_bad_fraction
        readers = max(num_workers, 1)
        self.segments = val_segments(source.shard_sizes, source.exact, world_size * readers)
        counts = [sum(stop - start for _, start, stop in part) for part in self.segments]
        # The same count on every worker of every rank, so ranks run the same number of eval steps.
        self.batches_per_worker = max(1, max(math.ceil(c / batch_size) for c in counts))
        self.batches = self.batches_per_worker * readers
        self.num_samples = sum(counts[rank * readers:(rank + 1) * readers])
        self.stats = Faults()

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]]:
        stream = ValStream(self.source, self.segments, self.batches_per_worker, self.rank,
                           self.batch_size, self.image_size, self.crop_ratio)
        self.stats = Faults()
        batches = worker_batches(stream, self.num_workers, self.pin_memory, self.prefetch_factor)
        return checked(batches, self.stats, self.max_bad_fraction * max(self.num_samples, 1),
                       f"{self.source.split} on rank {self.rank}")

