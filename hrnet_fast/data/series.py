"""Train workers that outlive epochs: one DataLoader iteration serves epoch after epoch.

Why: starting the workers every epoch costs a fork per worker, a fresh batch ring whose pages are
faulted in again, and a drained pipeline at each epoch's end, where the last batches come from
one worker while the others wait. On ImageNet (5000 batches an epoch) that is noise; on epochs
of 7 batches the loader ran 19 % faster without it (docs/performance.md, "The levers, one by one").

How: each worker's stream runs its share of epoch e, then of epoch e + 1, … in one generator,
and the DataLoader keeps asking the workers in turn across the epoch's end. So epoch e + 1's
first batch goes to worker T % W, where T counts the batches asked for before it; each worker
derives its own batches of the epoch from that turn (plan.logical_worker), and the batches are
exactly those of a fresh DataLoader per epoch. The main process (`Series`) hands them out an
epoch at a time and knows where the series stands; TrainLoader starts a new series when a call
does not continue there (another epoch or skip, another image size).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from torch.utils.data import IterableDataset

from hrnet_fast.data.stream import WorkerBatch, worker_slot


class EpochStream(Protocol):
    """One epoch of a rank's train batches (TrainStream, RangeStream)."""

    def batches_for(self, worker: int, workers: int, turn: int = 0) -> Iterator[WorkerBatch]: ...


StreamAt = Callable[[int, int], EpochStream]  # (epoch, skip_batches) → that epoch's stream


class EpochSeries(IterableDataset):
    """Epochs `epoch`, `epoch` + 1, … up to `stop` (exclusive; None: no end) of one rank's train
    batches, the first from batch `skip` on, as one stream per DataLoader worker."""

    def __init__(self, stream_at: StreamAt, epoch: int, skip: int, batches_per_epoch: int,
                 stop: int | None = None) -> None:
        self.stream_at, self.epoch, self.skip, self.stop = stream_at, epoch, skip, stop
        self.batches_per_epoch = batches_per_epoch

    def __iter__(self) -> Iterator[WorkerBatch]:
        worker, workers = worker_slot()
        epoch, skip, asked = self.epoch, self.skip, 0  # asked: batches the DataLoader asked for before `epoch`
        while self.stop is None or epoch < self.stop:
            yield from self.stream_at(epoch, skip).batches_for(worker, workers, turn=asked % workers)
            asked += self.batches_per_epoch - skip
            epoch, skip = epoch + 1, 0


class Series:
    """The main process's side of an EpochSeries: its batches, an epoch (or the rest of one) at a
    time, and where it stands: (epoch, batch) of the next batch it will hand out."""

    def __init__(self, batches: Iterator[WorkerBatch], epoch: int, skip: int, batches_per_epoch: int,
                 stop: int | None = None) -> None:
        self._batches: Iterator[WorkerBatch] | None = batches
        self.epoch, self.batch, self.batches_per_epoch, self.stop = epoch, skip, batches_per_epoch, stop
        self._reader = 0  # which take() may read: a later one supersedes the earlier

    def continues(self, epoch: int, skip: int) -> bool:
        """Whether the batches of (epoch, from skip) are this series' next ones (its workers run
        that far: `stop`, the EpochSeries' end, is past `epoch`)."""
        return (self._batches is not None and (epoch, skip) == (self.epoch, self.batch)
                and (self.stop is None or epoch < self.stop))

    def take(self) -> Iterator[WorkerBatch]:
        """The rest of the current epoch's batches. Where the consumer stops, the series stands."""
        self._reader += 1
        reader = self._reader
        for _ in range(self.batches_per_epoch - self.batch):
            if reader != self._reader or self._batches is None:
                raise RuntimeError("this epoch's batches were superseded by a later epoch_iter call or "
                                   "close(): finish an epoch's iterator before asking for the next")
            batch = next(self._batches, None)
            if batch is None:
                raise RuntimeError(f"the workers ended before epoch {self.epoch}: ask `continues` first")
            self.batch += 1
            if self.batch == self.batches_per_epoch:
                self.epoch, self.batch = self.epoch + 1, 0
            yield batch

    def close(self) -> None:
        """Stop the workers now (the DataLoader shuts them down when its iterator goes)."""
        batches, self._batches = self._batches, None
        if batches is not None and hasattr(batches, "close"):
            batches.close()
