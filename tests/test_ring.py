"""The batch ring (hrnet_fast/data/ring.py): buffers are reused once released, never while held.

What could break: a worker writing a new batch into a buffer the consumer still reads (silent
data corruption), or buffers never coming back (the speed-up lost).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from shardgen import make_shards

from hrnet_fast.data import TrainLoader, open_source
from hrnet_fast.data.ring import REUSE_SAFE, BatchRing
from hrnet_fast.data.stream import train_batch

pytestmark = pytest.mark.skipif(not REUSE_SAFE, reason="this torch keeps no Python object per storage: no reuse")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("ring"), train=120, val=8, shard_size=40, num_classes=3)


def loader(shards, workers: int) -> TrainLoader:
    # batch 4 → 30 batches per epoch; prefetch 1 → 3 buffers per worker: reuse must happen
    return TrainLoader(open_source(str(shards)), batch_size=4, image_size=32, num_workers=workers,
                       prefetch_factor=1, with_keys=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_released_buffers_are_reused_and_held_ones_are_not(shards, workers):
    released = loader(shards, workers)
    copies = [(images.clone(), keys) for images, _, keys in released.epoch_iter(0)]  # each batch let go at once
    assert released.ring.reuses() > len(copies) // 2

    held = loader(shards, workers)
    views = [(images.permute(0, 3, 1, 2)[:, :, 1:], keys) for images, _, keys in held.epoch_iter(0)]
    assert held.ring.reuses() == 0  # every batch still viewed: no buffer came back
    assert len(views) == len(copies) == 30
    for (copy, keys), (view, held_keys) in zip(copies, views, strict=True):
        assert keys == held_keys
        torch.testing.assert_close(view, copy.permute(0, 3, 1, 2)[:, :, 1:], rtol=0, atol=0)


def test_a_ring_without_free_buffers_hands_out_fresh_memory():
    ring = BatchRing((2, 4, 4, 3), workers=1, per_worker=2)
    first, second, third = (train_batch(ring, 0, 2, 4) for _ in range(3))
    assert [first[0], second[0], third[0]] == [0, 1, -1] and third[1].shape == (2, 4, 4, 3)
    third[1].fill_(7)
    assert not first[1].any() and not second[1].any()
    ring.release(0)
    assert ring.take(0)[0] == 0 and ring.reuses() == 1
    assert np.array_equal(ring.handed, [2, 1]) and np.array_equal(ring.released, [1, 0])
