"""Workers that outlive epochs (hrnet_fast/data/series.py): the same batches as fresh workers per epoch.

What could break: workers that run on into the next epoch serving the wrong batches (the
DataLoader's turn does not restart at an epoch's end), a series continued where it must restart
(another image size, a jump back), or a superseded epoch iterator reading another epoch's batches.
"""
from __future__ import annotations

import numpy as np
import pytest
from shardgen import make_shards

from hrnet_fast.data import TrainLoader, open_source
from hrnet_fast.data import series as series_module
from hrnet_fast.data.reader import Faults
from hrnet_fast.data.series import EpochSeries
from hrnet_fast.data.stream import WorkerBatch

TRAIN = 60  # batch 4 → 15 batches an epoch: odd, so with 2 workers each epoch starts at the other's turn


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("series"), train=TRAIN, val=4, shard_size=15, num_classes=3)


def sources(shards) -> dict[str, str]:
    """Both plans: indexed shards (sample ranges) and a pipe URL (whole shards)."""
    return {"sample-ranges": str(shards), "whole-shards": f"pipe:cat {shards}/train-{{000000..000003}}.tar"}


def loader(url: str, workers: int = 2, **kw) -> TrainLoader:
    return TrainLoader(open_source(url, num_samples=None if "{" not in url else TRAIN), batch_size=4,
                       image_size=32, num_workers=workers, shuffle_buffer=8, prefetch_factor=2, with_keys=True, **kw)


def epoch(batches) -> tuple[list[str], list[np.ndarray]]:
    batches = list(batches)
    return [k for *_, keys in batches for k in keys], [images.numpy().copy() for images, *_ in batches]


def same(a: tuple[list[str], list[np.ndarray]], b: tuple[list[str], list[np.ndarray]]) -> bool:
    return a[0] == b[0] and len(a[1]) == len(b[1]) and all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))


@pytest.mark.parametrize("plan", ["sample-ranges", "whole-shards"])
def test_a_series_gives_each_epoch_as_fresh_workers_would(shards, plan):
    url = sources(shards)[plan]
    series = loader(url)
    assert series.plan_name == plan
    resumed = [epoch(series.epoch_iter(1, skip_batches=5))]  # a resume mid-epoch, then on into epochs 2 and 3
    ring = series.ring
    resumed += [epoch(series.epoch_iter(e)) for e in (2, 3)]
    assert series.ring is ring  # one series: the workers ran on
    fresh = [epoch(loader(url).epoch_iter(1, skip_batches=5))] + [epoch(loader(url).epoch_iter(e)) for e in (2, 3)]
    steps = series.batches_per_epoch
    assert [len(keys) for keys, _ in resumed] == [4 * (steps - 5), 4 * steps, 4 * steps]
    assert all(same(a, b) for a, b in zip(resumed, fresh, strict=True))
    assert resumed[1][0] != resumed[2][0]  # the epochs differ: not one epoch served twice


def test_past_the_last_epoch_a_call_gets_workers_of_its_own(shards):
    series = loader(sources(shards)["sample-ranges"], workers=2, epochs=1)
    first = epoch(series.epoch_iter(0))
    ring = series.ring
    later = epoch(series.epoch_iter(1))  # the first series' workers stopped after epoch 0
    assert series.ring is not ring and len(later[0]) == len(first[0]) == TRAIN and later[0] != first[0]


def test_a_series_restarts_where_a_call_does_not_continue_it(shards):
    url = sources(shards)["sample-ranges"]
    series = loader(url, workers=2, epochs=3)
    first = series.epoch_iter(0)
    head = [next(first) for _ in range(3)]
    rest = series.epoch_iter(0, skip_batches=3)  # the rest of an unfinished epoch: same workers
    ring = series.ring
    tail = list(rest)
    assert series.ring is ring
    with pytest.raises(RuntimeError, match="superseded"):
        next(first)
    assert same(epoch(head + tail), epoch(loader(url).epoch_iter(0)))

    bigger = epoch(series.epoch_iter(1, image_size=48))  # another size: new workers, new ring
    assert series.ring is not ring and bigger[1][0].shape == (4, 48, 48, 3)
    assert same(bigger, epoch(loader(url).epoch_iter(1, image_size=48)))
    back = epoch(series.epoch_iter(0, image_size=48))  # a jump back: a new series
    assert same(back, epoch(loader(url).epoch_iter(0, image_size=48)))
    series.close()
    assert same(epoch(series.epoch_iter(2)), epoch(loader(url).epoch_iter(2)))  # closed: starts again


class CountingStream:
    """A stand-in epoch stream: one batch per step of its epoch that `worker` serves."""

    def __init__(self, epoch: int, skip: int, steps: int) -> None:
        self.epoch, self.skip, self.steps = epoch, skip, steps

    def batches_for(self, worker, workers, turn=0):
        logical = (worker - turn + self.skip) % workers
        return iter([WorkerBatch(((self.epoch, step),), Faults()) for step in range(self.skip, self.steps)
                     if step % workers == logical])


def test_workers_stop_after_the_last_epoch_and_serve_in_turn(monkeypatch):
    steps, workers = 7, 3
    make = lambda epoch, skip: CountingStream(epoch, skip, steps)  # noqa: E731
    produced = []
    for worker in range(workers):
        monkeypatch.setattr(series_module, "worker_slot", lambda w=worker: (w, workers))
        produced.append([batch.fields[0] for batch in EpochSeries(make, 4, 2, steps, stop=7)])
    asked = [produced[t % workers][t // workers] for t in range(sum(map(len, produced)))]  # the DataLoader's turns
    assert asked == [(4, s) for s in range(2, steps)] + [(e, s) for e in (5, 6) for s in range(steps)]
