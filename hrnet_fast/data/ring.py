"""Batch buffers a worker fills again once the main process has let go of them.

Why: a worker that builds each batch in fresh shared memory pays the kernel to map and zero every
page of it: about 70 µs per 224-px image on the development box, 10 % of a worker's time per
image. A ring of batch-sized buffers per worker, each written again only once its last batch has
been released in the main process, pays that once.

Safety comes first: a buffer is written again only after every tensor in the main process that
views its last batch is gone. The main process learns that from the storage's finalizer (torch
keeps one Python object per storage, so views made from the batch keep it alive too); with pinned
memory the batch is copied out before the main process sees it, so it is released on arrival.
A worker that finds none of its buffers released builds the batch in fresh memory (the caller's
`image_batch`), as before:
a consumer that keeps every batch gets correct batches, never a wait or an overwrite.

Counters live in shared memory: `handed[s]` (written by the worker that owns buffer s) and
`released[s]` (written by the main process); buffer s is free when they are equal. The ring is made
in the main process before the workers fork, one per series of epochs (series.py), so no worker
of an earlier series can touch it.
"""
from __future__ import annotations

import gc
import math
import weakref

import numpy as np
import torch
from torch.utils.data import get_worker_info


def shared_empty(shape: tuple[int, ...]) -> torch.Tensor:
    """A uint8 tensor in shared memory, its pages not yet touched (they cost nothing until written)."""
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def _storage_finalizers_work() -> bool:
    """Whether a finalizer on a storage waits for every view (torch keeps one Python object per storage)."""
    try:
        base = torch.zeros(4, dtype=torch.uint8)
        fired: list[int] = []
        weakref.finalize(base.untyped_storage(), fired.append, 1)
        view = base[1:]
        del base
        gc.collect()
        early = bool(fired)
        del view
        gc.collect()
        return not early and bool(fired)
    except TypeError:  # storages without weak references
        return False


REUSE_SAFE = _storage_finalizers_work()


class BatchRing:
    """`per_worker` uint8 batch buffers of `shape` for each of `workers` readers, in shared memory."""

    def __init__(self, shape: tuple[int, ...], workers: int, per_worker: int) -> None:
        self.shape, self.per_worker = shape, per_worker
        slots = max(workers, 1) * per_worker if REUSE_SAFE else 0
        self.buffers = [shared_empty(shape) for _ in range(slots)]
        counters = torch.zeros(2, slots, dtype=torch.int64).share_memory_()
        self._counters = counters  # keeps the shared block alive
        self.handed, self.released = counters.numpy()
        self._cursor = 0  # this process's next buffer to try (each worker has its own copy)

    def take(self, worker: int) -> tuple[int, torch.Tensor | None]:
        """(slot, buffer) for the worker's next batch: a released buffer of its own, else (-1, None).

        In a worker the buffer's own tensor goes out (its storage is shared: only a handle crosses);
        in the main process (no workers) a tensor on a storage of its own, so that its finalizer
        sees the consumer let go, not the ring's reference."""
        base = worker * self.per_worker
        for i in range(self.per_worker if self.buffers else 0):
            slot = base + (self._cursor + i) % self.per_worker
            if self.handed[slot] == self.released[slot]:
                self.handed[slot] += 1
                self._cursor = (self._cursor + i + 1) % self.per_worker
                buffer = self.buffers[slot]
                return slot, buffer if get_worker_info() is not None else torch.from_numpy(buffer.numpy())
        return -1, None

    def track(self, slot: int, images: torch.Tensor) -> None:
        """In the main process, for each batch that arrives: release its buffer once `images` (the
        main process's view of it) and every view made from it are gone; at once if `images` is
        pinned, a copy made on the way. (Where pinned memory cannot be recognised, the copy's
        finalizer releases it: later, never too early.)"""
        if slot < 0:
            return
        if images.is_pinned():
            self.release(slot)
        else:
            weakref.finalize(images.untyped_storage(), self.release, slot)

    def release(self, slot: int) -> None:
        self.released[slot] += 1

    def reuses(self) -> int:
        """Batches built in a buffer that an earlier batch had used (for tests and benchmarks)."""
        return int(np.maximum(self.handed - 1, 0).sum())
