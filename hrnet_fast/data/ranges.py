"""What one DataLoader worker does under the sample-ranges plan: read its batches' sample ranges
from indexed shards, shuffle a window of them, decode, batch.

Each batch is P[(s·R + r)·b : …] of the epoch's SamplePlan (plan.py), read as one positioned
read per block piece (the index gives the byte range), so any number of workers share a shard
and no sample is read twice. Every slot of a batch is fixed by the plan: a sample that cannot be
read or decoded is replaced by a good one of the same batch (counted as `repeated`), so damage
never shifts later batches and resuming stays exact. Each slot's crop and flip are drawn from
(seed, epoch, its position in P): the stream depends on (seed, epoch) only, and the rank's
worker count only through the window shuffle.
"""
from __future__ import annotations

import collections
import io
import os
import tarfile
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset

from hrnet_fast import log as logs
from hrnet_fast.data.decode import TRAIN_SCALE, decode_train_image
from hrnet_fast.data.plan import SamplePlan, Window, step_span, window_order, window_pieces, worker_windows
from hrnet_fast.data.reader import Faults, RawSample, to_sample
from hrnet_fast.data.ring import BatchRing
from hrnet_fast.data.source import ShardSource
from hrnet_fast.data.stream import Draws, PositionDraws, WorkerBatch, decoded, train_batch, worker_slot
from hrnet_fast.shardformat.index import TarIndex
from hrnet_fast.shardformat.samples import group_samples
from hrnet_fast.shardformat.tar import tar_files

log = logs.get(__name__)

SPARE = 4  # good samples a worker keeps to fill a batch that has none
OPEN_SHARDS = 64  # file handles a worker keeps: 8 workers × 1024 shards would pass the usual fd limit


class ShardFiles:
    """Positioned reads from shard files, keeping the most recently used ones open."""

    def __init__(self, limit: int = OPEN_SHARDS) -> None:
        self.limit = limit
        self._fds: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.failed: set[str] = set()  # shards found damaged: warned about and reported once

    def read(self, path: str, offset: int, size: int) -> bytes:
        fd = self._fds.pop(path, None)
        if fd is None:
            fd = os.open(path, os.O_RDONLY)
            if len(self._fds) >= self.limit:
                os.close(self._fds.popitem(last=False)[1])
        self._fds[path] = fd
        data = os.pread(fd, size, offset)
        if len(data) < size:
            raise EOFError(f"shard ends at {offset + len(data)}, its index says {offset + size}: cut short")
        return data

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])


def read_piece(files: ShardFiles, url: str, index: TarIndex | None, start: int, stop: int,
               faults: Faults) -> list[RawSample | None]:
    """Samples [start, stop) of one shard, None where one is unreadable (counted in `faults`)."""
    count = stop - start
    try:
        if index is None:
            raise FileNotFoundError("missing or unreadable when the source was opened")
        lo, hi = int(index.offsets[start]), int(index.offsets[stop])
        data = files.read(url, lo, hi - lo)
        groups = list(group_samples(tar_files(io.BytesIO(data), stop=len(data))))
        if len(groups) != count:
            raise tarfile.HeaderError(f"{len(groups)} samples where its index has {count}")
    except (OSError, tarfile.TarError, EOFError) as exc:
        faults.lost += count
        if url not in files.failed:
            files.failed.add(url)
            faults.bad_shards.append(os.path.basename(url))
            log.warning(f"shard {url} unreadable at samples {start}..{stop} ({exc}); skipped its unreadable parts")
        return [None] * count
    samples = [to_sample(key, fields) for key, fields in groups]
    faults.corrupt += samples.count(None)
    return samples


class RangeStream(IterableDataset):
    """One rank's training batches for one epoch of a SamplePlan, as the DataLoader's workers make them."""

    def __init__(self, source: ShardSource, plan: SamplePlan, epoch: int, seed: int, rank: int, world_size: int,
                 batch_size: int, image_size: int, window: int, skip_batches: int = 0, with_keys: bool = False,
                 crop_scale: tuple[float, float] = TRAIN_SCALE, hflip: bool = True,
                 ring: BatchRing | None = None) -> None:
        self.ring, self.worker = ring, 0  # worker: this process's DataLoader worker id, set when iterated
        self.source, self.plan, self.epoch, self.seed = source, plan, epoch, seed
        self.rank, self.world_size, self.batch_size, self.image_size = rank, world_size, batch_size, image_size
        self.window, self.skip_batches, self.with_keys = window, skip_batches, with_keys
        self.crop_scale, self.hflip = crop_scale, hflip
        self.num_classes = len(source.classes) if source.classes else None

    def __iter__(self) -> Iterator[WorkerBatch]:
        return self.batches_for(*worker_slot())

    def batches_for(self, worker: int, workers: int, turn: int = 0) -> Iterator[WorkerBatch]:
        """DataLoader worker `worker`'s batches when the DataLoader asks worker `turn` first."""
        self.worker = worker
        return self.batches_of(worker_windows(self.plan.steps, self.skip_batches, worker, workers, self.window, turn))

    def batches_of(self, windows: list[Window]) -> Iterator[WorkerBatch]:
        """The windows' batches from their `skip` on; a window's samples are read before any is decoded."""
        faults, files = Faults(), ShardFiles()
        draws = PositionDraws(self.seed, self.epoch)
        spare: list[RawSample] = []  # the last good samples, for a batch without any
        try:
            for window in windows:
                slots = self.window_samples(window, files, faults)
                bs = self.batch_size
                for n in range(window.skip, len(window.steps)):
                    lo, _ = step_span(window.steps[n], self.rank, self.world_size, bs)
                    ring_slot, batch = self.assemble(slots[n * bs:(n + 1) * bs], lo, draws, faults, spare)
                    if batch is None:
                        yield WorkerBatch((), faults.take(), f"train reader {self.rank}/{window.worker} has no "
                                          "readable samples left: check the shards with `python -m pack verify DIR`")
                        return
                    yield WorkerBatch(batch, faults.take(), slot=ring_slot)
        finally:
            files.close()

    def window_samples(self, window: Window, files: ShardFiles, faults: Faults) -> list[RawSample | None]:
        """The window's batches' samples in plan order, then shuffled among them (window > 1)."""
        src = self.source
        indexes = src.indexes or []
        slots = [sample for shard, start, stop in window_pieces(self.plan, window, self.rank, self.world_size,
                                                                self.batch_size)
                 for sample in read_piece(files, src.urls[shard], indexes[shard], start, stop, faults)]
        if self.window > 1:
            slots = [slots[i] for i in window_order(self.seed, self.epoch, self.rank, window, len(slots))]
        return slots

    def assemble(self, slots: list[RawSample | None], first: int, draws: PositionDraws, faults: Faults,
                 spare: list[RawSample]) -> tuple[int, tuple | None]:
        """(ring slot, (images, labels[, keys])) of one batch whose slots sit at P positions first,
        first + 1, …

        A bad slot gets a copy of a good one of the batch; in a batch without any, a fresh crop of
        one of `spare` (the last good samples before it). None when there is nothing to fill with.
        """
        bs = self.batch_size
        ring_slot, batch, images = train_batch(self.ring, self.worker, bs, self.image_size)
        labels = np.empty(bs, np.int64)
        keys = [""] * bs
        good, bad = [], []
        for i, sample in enumerate(slots):
            if sample is None or self.decode(sample, draws.at(first + i), faults, images[i]) is None:
                bad.append(i)
            else:
                labels[i], keys[i] = sample.label, sample.key
                good.append(i)
        for n, i in enumerate(bad):
            if good:
                j = good[n % len(good)]
                images[i], labels[i], keys[i] = images[j], labels[j], keys[j]
                continue
            donor = spare[n % len(spare)] if spare else None
            if donor is None or self.decode(donor, draws.at(first + i), faults, images[i]) is None:
                return ring_slot, None
            labels[i], keys[i] = donor.label, donor.key
        faults.repeated += len(bad)
        spare[:] = [s for i in good[-SPARE:] if (s := slots[i]) is not None] or spare
        fields = (batch, torch.from_numpy(labels))
        return ring_slot, fields + (keys,) if self.with_keys else fields

    def decode(self, sample: RawSample, rng: Draws, faults: Faults, slot: np.ndarray) -> np.ndarray | None:
        """The sample's crop, written into `slot` (its place in the batch); None if it is corrupt."""
        return decoded(sample, lambda data: decode_train_image(data, self.image_size, rng, self.crop_scale,
                                                               hflip=self.hflip, out=slot), faults, self.num_classes)
