"""What one DataLoader worker does under the whole-shard plan (shards without a sample index):
read its shards, shuffle compressed samples, decode, batch; and the pieces both plans share.

Batches are built inside the worker as uint8 NHWC tensors, so the main process and the device
copy see one contiguous block per batch and no per-sample work. Every batch carries the worker's
`Faults` since its previous batch: workers are separate processes, and this is how the main
process learns about skipped samples and shards without a side channel.

Randomness is keyed, never sequential across workers: the shuffle buffer draws from
(seed, epoch, global worker), and each sample's crop and flip from (seed, epoch, global worker,
position), where position counts samples leaving the shuffle buffer. So a stream depends only on
(seed, epoch), not on timing, and resuming can skip samples before decoding them.
"""
from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from hrnet_fast import log as logs
from hrnet_fast.data.decode import TRAIN_SCALE, decode_train_image, decode_val_image
from hrnet_fast.data.plan import epoch_rng, logical_worker, skipped_batches
from hrnet_fast.data.reader import Faults, RawSample, read_shard
from hrnet_fast.data.ring import BatchRing, shared_empty
from hrnet_fast.data.source import ShardSource

log = logs.get(__name__)

T = TypeVar("T")

SHUFFLE_STREAM, CROP_STREAM = 0, 1  # sub-stream ids for epoch_rng


class WorkerBatch(NamedTuple):
    """A worker's output: the batch fields, its faults since the last batch, a fatal message, and
    the BatchRing slot its images were built in (-1: fresh memory)."""

    fields: tuple
    faults: Faults
    fatal: str | None = None
    slot: int = -1


def worker_slot() -> tuple[int, int]:
    """(this DataLoader worker's id, number of workers); (0, 1) in the main process."""
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def image_batch(batch_size: int, size: int, zeroed: bool = False) -> tuple[torch.Tensor, np.ndarray]:
    """A uint8 [B, S, S, 3] batch as (tensor, numpy view of it), in shared memory inside a worker.

    A worker's batch reaches the main process through shared memory; a batch built in ordinary
    memory is copied there when it is sent (another 150 KB written and page-faulted per 224-px
    image). Built there from the start, only its handle travels, as DataLoader's own collate does.
    `zeroed`: padding slots must read as zeros (fresh shared memory is zero-filled by the kernel).
    """
    shape = (batch_size, size, size, 3)
    if get_worker_info() is not None:
        tensor = shared_empty(shape)
    else:
        tensor = torch.zeros(shape, dtype=torch.uint8) if zeroed else torch.empty(shape, dtype=torch.uint8)
    return tensor, tensor.numpy()


def train_batch(ring: BatchRing | None, worker: int, batch_size: int, size: int) -> tuple[int, torch.Tensor, np.ndarray]:
    """(ring slot or -1, uint8 [B, S, S, 3] tensor, its numpy view) for a worker's next train batch."""
    slot, batch = ring.take(worker) if ring is not None else (-1, None)
    if batch is None:
        return (-1, *image_batch(batch_size, size))
    return slot, batch, batch.numpy()


class Draws:
    """One sample's pre-drawn uniforms, behind the few Generator methods the crop calls.

    Building a seeded Generator per sample costs more than reading the sample from the tar, so
    uniforms are drawn in bulk per block of positions and handed out row by row.
    """

    def __init__(self, values: np.ndarray) -> None:
        self._values = iter(values.tolist())

    def random(self) -> float:
        return next(self._values)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def integers(self, low: int, high: int) -> int:
        return low + min(int(self.random() * (high - low)), high - low - 1)


class PositionDraws:
    """`Draws` for a position in a sample stream, keyed by (seed, epoch, *stream, position): the
    stream is a global worker's (whole-shard plan) or the epoch's one sample sequence (sample ranges)."""

    BLOCK, PER_SAMPLE = 256, 24  # a crop uses at most 10 × 2 + 2 uniforms, the flip one more

    def __init__(self, seed: int, epoch: int, *stream: int) -> None:
        self.key = (seed, epoch, *stream, CROP_STREAM)
        self.block, self.table = -1, np.empty(0)

    def at(self, position: int) -> Draws:
        block, row = divmod(position, self.BLOCK)
        if block != self.block:
            self.block = block
            self.table = epoch_rng(*self.key, block).random((self.BLOCK, self.PER_SAMPLE))
        return Draws(self.table[row])


def shuffled(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """A shuffle buffer of `size` items that starts emitting at size // 8 and grows to full.

    Emitting one item per two read while growing keeps the first batch quick without losing
    the buffer's reach later.
    """
    buffer: list[T] = []
    start = max(1, size // 8)
    for n, item in enumerate(items):
        buffer.append(item)
        if len(buffer) < start or (len(buffer) < size and n % 2):
            continue
        j = int(rng.integers(len(buffer)))
        buffer[j], buffer[-1] = buffer[-1], buffer[j]
        yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


def decoded(sample: RawSample, decode: Callable[[bytes], np.ndarray], faults: Faults,
            num_classes: int | None) -> np.ndarray | None:
    """The decoded image, or None, counted as corrupt, for undecodable bytes or a bad label.

    A label outside the class range would crash the loss on the device, so it is caught here.
    """
    if sample.label < 0 or (num_classes is not None and sample.label >= num_classes):
        faults.corrupt += 1
        log.warning(f"sample {sample.key} has label {sample.label}, outside 0..{num_classes}; skipped")
        return None
    try:
        return decode(sample.image)
    except Exception as exc:  # whatever the decoder raises, the sample is corrupt
        faults.corrupt += 1
        log.warning(f"sample {sample.key} undecodable ({exc}); skipped")
        return None


class TrainStream(IterableDataset):
    """One rank's training batches for one epoch, as the DataLoader's workers produce them."""

    def __init__(self, source: ShardSource, shards: list[list[int]], batches: int, epoch: int,
                 seed: int, rank: int, batch_size: int, image_size: int, shuffle_buffer: int,
                 skip_batches: int = 0, with_keys: bool = False,
                 crop_scale: tuple[float, float] = TRAIN_SCALE, hflip: bool = True,
                 ring: BatchRing | None = None) -> None:
        self.ring, self.worker = ring, 0  # worker: this process's DataLoader worker id, set when iterated
        self.source, self.shards, self.batches, self.epoch, self.seed = source, shards, batches, epoch, seed
        self.rank, self.batch_size, self.image_size = rank, batch_size, image_size
        self.shuffle_buffer, self.skip_batches, self.with_keys = shuffle_buffer, skip_batches, with_keys
        self.num_classes = len(source.classes) if source.classes else None
        self.crop_scale, self.hflip = crop_scale, hflip

    def __iter__(self) -> Iterator[WorkerBatch]:
        return self.batches_for(*worker_slot())

    def batches_for(self, worker: int, workers: int, turn: int = 0) -> Iterator[WorkerBatch]:
        """DataLoader worker `worker`'s batches when the DataLoader asks worker `turn` first."""
        self.worker = worker
        logical = logical_worker(worker, workers, self.skip_batches, turn)
        global_worker = self.rank * workers + logical
        skip = skipped_batches(self.skip_batches, logical, workers)
        return self.batches_of(global_worker, skip)

    def samples(self, global_worker: int, faults: Faults) -> Iterator[RawSample]:
        src = self.source
        raw = (s for shard in self.shards[global_worker]
               for s in read_shard(src.urls[shard], src.shard_sizes[shard], faults))
        return shuffled(raw, self.shuffle_buffer, epoch_rng(self.seed, self.epoch, global_worker, SHUFFLE_STREAM))

    def batches_of(self, global_worker: int, skip: int) -> Iterator[WorkerBatch]:
        """Exactly `batches - skip` full batches, decoding nothing of the first `skip`."""
        faults = Faults()
        size, bs = self.image_size, self.batch_size
        recent: collections.deque[RawSample] = collections.deque(maxlen=bs)
        stream = refilled(self.samples(global_worker, faults), recent, faults)
        numbered = enumerate(itertools.islice(stream, skip * bs, None), skip * bs)
        draws = PositionDraws(self.seed, self.epoch, global_worker)
        for _ in range(skip, self.batches):
            ring_slot, batch, images = train_batch(self.ring, self.worker, bs, size)
            labels = np.empty(bs, np.int64)
            keys: list[str] = []
            while len(keys) < bs:
                numbered_sample = next(numbered, None)
                if numbered_sample is None:
                    yield WorkerBatch((), faults.take(), f"train reader {global_worker} has no readable "
                                      "samples left: check the shards with `python -m pack verify DIR`")
                    return
                position, sample = numbered_sample
                rng, slot = draws.at(position), images[len(keys)]
                crop = lambda data, rng=rng, slot=slot: decode_train_image(  # noqa: E731
                    data, size, rng, self.crop_scale, hflip=self.hflip, out=slot)
                if decoded(sample, crop, faults, self.num_classes) is None:
                    continue
                labels[len(keys)] = sample.label
                keys.append(sample.key)
                recent.append(sample)
            fields = (batch, torch.from_numpy(labels))
            yield WorkerBatch(fields + (keys,) if self.with_keys else fields, faults.take(), slot=ring_slot)


def refilled(samples: Iterator[RawSample], recent: collections.deque, faults: Faults) -> Iterator[RawSample]:
    """`samples`, then (if skips left the worker short) its recent good samples again, counted.

    Repeating a few samples keeps every worker's batch count equal, so no rank waits forever in
    a collective; the count goes to the caller, which aborts past its threshold.
    """
    yield from samples
    pool = list(recent)
    for sample in itertools.cycle(pool):
        faults.repeated += 1
        yield sample


class ValStream(IterableDataset):
    """One rank's eval batches: each sample once, the tail padded and masked to the batch shape."""

    def __init__(self, source: ShardSource, segments: list[list[tuple[int, int, int]]], batches: int,
                 rank: int, batch_size: int, image_size: int, crop_ratio: float) -> None:
        self.source, self.segments, self.batches, self.rank = source, segments, batches, rank
        self.batch_size, self.image_size, self.crop_ratio = batch_size, image_size, crop_ratio
        self.num_classes = len(source.classes) if source.classes else None

    def __iter__(self) -> Iterator[WorkerBatch]:
        worker, workers = worker_slot()
        return self.batches_of(self.rank * workers + worker)

    def batches_of(self, global_worker: int) -> Iterator[WorkerBatch]:
        """At least `batches` batches (fully masked ones pad a short worker), more only if the
        shards hold more samples than their estimated counts (foreign shards)."""
        faults = Faults()
        src = self.source
        samples = (s for shard, start, stop in self.segments[global_worker]
                   for s in read_shard(src.urls[shard], src.shard_sizes[shard], faults, start, stop))
        produced = 0
        while True:
            fields, valid = self.fill(samples, faults)
            if valid == 0 and produced >= self.batches:
                break
            produced += 1
            yield WorkerBatch(fields, faults.take())
        if produced > self.batches:
            log.warning(f"val reader {global_worker} had {produced} batches, {self.batches} planned: --num-samples "
                 "is below the shards' real count, so ranks may run unequal eval steps")

    def fill(self, samples: Iterator[RawSample], faults: Faults) -> tuple[tuple, int]:
        """(images, labels, mask, keys) with up to batch_size valid samples; padding is zeros / ""."""
        bs, size = self.batch_size, self.image_size
        batch, images = image_batch(bs, size, zeroed=True)
        labels = np.zeros(bs, np.int64)
        mask = np.zeros(bs, np.bool_)
        keys = [""] * bs
        n = 0
        for sample in samples:
            crop = lambda data, slot=images[n]: decode_val_image(data, size, self.crop_ratio, slot)  # noqa: E731
            if decoded(sample, crop, faults, self.num_classes) is None:
                continue
            labels[n], mask[n], keys[n] = sample.label, True, sample.key
            n += 1
            if n == bs:
                break
        return (batch, torch.from_numpy(labels), torch.from_numpy(mask), keys), n
