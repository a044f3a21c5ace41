"""The streaming shard loader: rank × worker splits, determinism, resume, val coverage, faults."""
from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT
from imagegen import encode, photo_like
from PIL import Image
from shardgen import make_shards

from hrnet_fast.data import DevicePrefetcher, TrainLoader, ValLoader, decode_val_image, open_source
from hrnet_fast.data.decode import center_crop_box, decode_train_image, random_resized_crop_box
from hrnet_fast.data.plan import (
    BLOCK,
    SamplePlan,
    deal,
    pieces,
    sample_plan,
    skipped_batches,
    step_span,
    val_segments,
    worker_windows,
)
from hrnet_fast.data.reader import Faults, read_shard
from hrnet_fast.device import Device
from hrnet_fast.errors import UserError

NUM_CLASSES = 4
TRAIN = 115  # 12 shards of 10, the last one 5: unequal loads over 4 readers
VAL = 23  # not divisible by ranks × workers × batch


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_shards(tmp_path_factory.mktemp("shards"), train=TRAIN, val=VAL, shard_size=10,
                       num_classes=NUM_CLASSES, val_shard_size=8)


def jpeg(image: Image.Image) -> bytes:
    return encode(image, quality=90)


def train_loader(shards: Path | str, rank: int = 0, world_size: int = 2, num_workers: int = 2, seed: int = 0,
                 num_samples: int | None = None, **kw) -> TrainLoader:
    kw = {"shuffle_buffer": 16, **kw}
    return TrainLoader(open_source(str(shards), num_samples=num_samples), batch_size=4, image_size=32, rank=rank,
                       world_size=world_size, num_workers=num_workers, seed=seed, with_keys=True, **kw)


def label_of(key: str) -> int:
    return int(key.rsplit("_", 1)[1]) % NUM_CLASSES


def planned_keys(plan: SamplePlan, step: int, rank: int, world_size: int, batch_size: int = 4,
                 shard_size: int = 10) -> list[str]:
    """The keys rank `rank` trains on at `step` (shardgen numbers samples across shards)."""
    return [f"train_{shard * shard_size + i:06d}"
            for shard, start, stop in pieces(plan, *step_span(step, rank, world_size, batch_size))
            for i in range(start, stop)]


@pytest.mark.parametrize("shuffle_buffer", [4, 16])  # window of 1 batch (none), of 4 batches
def test_two_ranks_disjoint_equal_and_complete(shards, shuffle_buffer):
    loaders = [train_loader(shards, rank, shuffle_buffer=shuffle_buffer, block=3) for rank in (0, 1)]
    plan = loaders[0].plan(0)
    assert loaders[0].plan_name == "sample-ranges" and isinstance(plan, SamplePlan)
    assert np.array_equal(plan.ends, loaders[1].plan(0).ends) and np.array_equal(plan.shards, loaders[1].plan(0).shards)
    assert loaders[0].batches_per_epoch == loaders[1].batches_per_epoch == 14  # 115 // (4 × 2)
    assert loaders[0].dropped_per_epoch == TRAIN - 14 * 4 * 2 == 3
    seen: list[str] = []
    for rank, loader in enumerate(loaders):
        batches = list(loader.epoch_iter(0))
        assert len(batches) == loader.batches_per_epoch
        for step, (images, labels, keys) in enumerate(batches):
            assert images.dtype == torch.uint8 and images.shape == (4, 32, 32, 3)
            assert labels.dtype == torch.int64 and labels.tolist() == [label_of(k) for k in keys]
            if loader.window == 1:  # without the window shuffle a step holds exactly its span of P
                assert sorted(keys) == sorted(planned_keys(plan, step, rank, 2))
            seen.extend(keys)
        window_steps = range(0, 14, 2 * loader.window)  # worker 0's windows start at these steps
        for first in window_steps:  # a window holds exactly its steps' spans of P, reshuffled
            steps = range(first, min(first + 2 * loader.window, 14), 2)
            assert sorted(k for s in steps for k in batches[s][2]) == \
                sorted(k for s in steps for k in planned_keys(plan, s, rank, 2))
    assert len(seen) == len(set(seen)) == TRAIN - loaders[0].dropped_per_epoch


def test_sample_plan_guarantees():
    for sizes, world_size, batch_size, block in [([10] * 11 + [5], 2, 4, 3), ([800], 1, 32, BLOCK),
                                                 ([7, 1, 30, 0, 12], 3, 2, 4), ([64], 2, 8, 16)]:
        total = sum(sizes)
        plans = [sample_plan(sizes, 0, epoch, world_size, batch_size, block) for epoch in range(4)]
        for plan in plans:
            steps = total // (batch_size * world_size)
            assert plan.steps == steps and plan.dropped == total - steps * batch_size * world_size
            assert 0 <= plan.dropped <= batch_size * world_size - 1
            used = [(shard, i) for step in range(steps) for rank in range(world_size)
                    for shard, a, b in pieces(plan, *step_span(step, rank, world_size, batch_size))
                    for i in range(a, b)]
            assert len(used) == len(set(used)) == steps * batch_size * world_size
            assert all(0 <= i < sizes[shard] for shard, i in used)
            every = pieces(plan, 0, total)  # the whole of P: every sample once, blocks inside shards
            assert sorted((s, i) for s, a, b in every for i in range(a, b)) == \
                [(s, i) for s, n in enumerate(sizes) for i in range(n)]
            assert all(b - a <= block for _, a, b in every)
        again = sample_plan(sizes, 0, 0, world_size, batch_size, block)
        assert np.array_equal(again.shards, plans[0].shards) and np.array_equal(again.starts, plans[0].starts)
        assert len({(tuple(p.shards), tuple(p.starts)) for p in plans}) > 1  # the order changes by epoch
    assert sample_plan([96], 0, 0, 2, 8).dropped == 0  # it divides: nothing dropped
    with pytest.raises(UserError, match="--batch-size"):
        sample_plan([5, 5], 0, 0, 2, 8)


def test_worker_windows_cover_the_steps_round_robin():
    for steps, workers, window in [(7, 4, 1), (14, 2, 4), (5, 3, 2), (1, 4, 3)]:
        for skip in range(steps + 1):
            served = [[s for win in worker_windows(steps, skip, w, workers, window) for s in win.steps[win.skip:]]
                      for w in range(workers)]
            assert served == [list(range(skip + w, steps, workers)) for w in range(workers)]
            full = {(win.worker, win.index): win.steps for w in range(workers)
                    for win in worker_windows(steps, 0, w, workers, window)}
            for w in range(workers):  # a resumed worker cuts the same windows as in the full run
                assert all(full[win.worker, win.index] == win.steps for win in worker_windows(steps, skip, w, workers,
                                                                                              window))


class UnevenWorkers(torch.utils.data.IterableDataset):
    """Worker w yields steps w, w + W, … < steps after random pauses: the last workers end a batch early."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng(info.id)
        for step in range(info.id, self.steps, info.num_workers):
            time.sleep(float(rng.uniform(0, 0.02)) * (info.num_workers - info.id))  # the short workers are quick
            yield step


def test_dataloader_keeps_round_robin_order_when_workers_end_unevenly():
    from torch.utils.data import DataLoader

    for steps, workers in [(7, 4), (9, 2), (2, 3)]:
        loader = DataLoader(UnevenWorkers(steps), batch_size=None, num_workers=workers, prefetch_factor=2)
        assert list(loader) == list(range(steps))


def test_one_shard_feeds_two_ranks_and_mixes_shards(tmp_path):
    one = make_shards(tmp_path / "one", train=30, shard_size=30, num_classes=NUM_CLASSES)
    keys = []
    for rank in (0, 1):
        loader = train_loader(one, rank, world_size=2, num_workers=2, block=2)
        assert loader.batches_per_epoch == 3 and loader.dropped_per_epoch == 6
        keys += keys_and_pixels(loader.epoch_iter(1))[0]
    assert len(keys) == len(set(keys)) == 24
    plan = sample_plan([30], 0, 0, 2, 4, 2)
    for workers in (4, 8):  # 2 ranks × 4 or 8 workers from one shard: some workers simply get fewer batches
        counts = [sum(len(w.steps) for w in worker_windows(plan.steps, 0, w, workers, 1)) for w in range(workers)]
        assert sum(counts) == plan.steps and max(counts) - min(counts) <= 1
    many = make_shards(tmp_path / "many", train=40, shard_size=10, num_classes=NUM_CLASSES)
    batches = keys_and_pixels(train_loader(many, world_size=1, num_workers=0, block=2).epoch_iter(0))[0]
    shards_per_batch = [len({int(k[6:]) // 10 for k in batches[i:i + 4]}) for i in range(0, len(batches), 4)]
    assert max(shards_per_batch) >= 2 and np.mean(shards_per_batch) > 1.5


def test_whole_shard_plan_still_deals_equal_loads():
    _, loads = deal([10] * 11 + [5], list(range(12)), 4)
    assert sorted(loads) == [25, 30, 30, 30]


def keys_and_pixels(batches) -> tuple[list[str], list[np.ndarray]]:
    batches = list(batches)
    return [k for *_, keys in batches for k in keys], [b[0].numpy() for b in batches]


def test_order_changes_with_epoch_and_repeats_with_seed(shards):
    keys0, pixels0 = keys_and_pixels(train_loader(shards).epoch_iter(0))
    keys0_again, pixels0_again = keys_and_pixels(train_loader(shards).epoch_iter(0))
    keys1, _ = keys_and_pixels(train_loader(shards).epoch_iter(1))
    keys_seed, _ = keys_and_pixels(train_loader(shards, seed=1).epoch_iter(0))
    assert keys0 == keys0_again and all(np.array_equal(a, b) for a, b in zip(pixels0, pixels0_again))
    assert keys0 != keys1 and keys0 != keys_seed


@pytest.mark.parametrize("num_workers, skip, shuffle_buffer", [(2, 3, 16), (2, 9, 16), (0, 2, 16), (2, 5, 4)])
def test_mid_epoch_skip_is_the_tail_of_the_epoch(shards, num_workers, skip, shuffle_buffer):
    full_keys, full_pixels = keys_and_pixels(train_loader(shards, num_workers=num_workers,
                                                          shuffle_buffer=shuffle_buffer).epoch_iter(2))
    loader = train_loader(shards, num_workers=num_workers, shuffle_buffer=shuffle_buffer)
    tail_keys, tail_pixels = keys_and_pixels(loader.epoch_iter(2, skip_batches=skip))
    assert len(full_pixels) == loader.batches_per_epoch and len(tail_pixels) == len(full_pixels) - skip
    assert tail_keys == full_keys[skip * 4:]
    assert all(np.array_equal(a, b) for a, b in zip(tail_pixels, full_pixels[skip:]))


def test_skipped_batches_follow_round_robin():
    for workers in (1, 2, 3):
        for skip in range(10):
            counts = [skipped_batches(skip, w, workers) for w in range(workers)]
            assert counts == [sum(1 for i in range(skip) if i % workers == w) for w in range(workers)]


def test_val_each_sample_once_padded_and_masked(shards):
    source = open_source(str(shards), "val")
    loaders = [ValLoader(source, batch_size=4, image_size=32, rank=r, world_size=2, num_workers=2) for r in (0, 1)]
    assert loaders[0].batches == loaders[1].batches
    keys: list[str] = []
    for loader in loaders:
        batches = list(loader)
        assert len(batches) == loader.batches
        for images, labels, mask, batch_keys in batches:
            assert images.shape == (4, 32, 32, 3) and mask.dtype == torch.bool and len(batch_keys) == 4
            for key, label, valid in zip(batch_keys, labels.tolist(), mask.tolist()):
                assert valid == (key != "")
                if valid:
                    assert label == label_of(key)
            keys.extend(k for k in batch_keys if k)
    assert sorted(keys) == [f"val_{i:06d}" for i in range(VAL)]
    assert sum(loader.num_samples for loader in loaders) == VAL


def test_val_segments_cover_everything_once():
    for exact in (True, False):
        parts = val_segments([8, 8, 7], exact, 4)
        covered = [(s, i) for part in parts for s, a, b in part for i in range(a, b)]
        assert sorted(covered) == [(s, i) for s, n in enumerate([8, 8, 7]) for i in range(n)]


def test_prefetcher_normalizes_to_channels_last(shards):
    loader = ValLoader(open_source(str(shards), "val"), batch_size=4, image_size=32, num_workers=0)
    raw = next(iter(loader))
    mean, std = (120.0, 110.0, 100.0), (60.0, 50.0, 40.0)
    for dtype in (torch.float32, torch.bfloat16):
        x, labels, mask, keys = next(iter(DevicePrefetcher(loader, Device("cpu"), dtype, mean, std)))
        assert x.dtype == dtype and x.shape == (4, 3, 32, 32)
        assert x.is_contiguous(memory_format=torch.channels_last)
        expected = (raw[0].permute(0, 3, 1, 2).float() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
            std).view(1, 3, 1, 1)
        assert torch.allclose(x.float(), expected, atol=0.05 if dtype == torch.bfloat16 else 1e-5)
        assert torch.equal(labels, raw[1]) and torch.equal(mask, raw[2]) and keys == raw[3]
    assert len(DevicePrefetcher(loader, Device("cpu"))) == loader.batches


def test_corrupt_sample_and_missing_shard_are_skipped_and_counted(tmp_path, capfd):
    directory = make_shards(tmp_path, train=80, shard_size=10, num_classes=NUM_CLASSES,
                            corrupt=[3], bad_label=[4])
    (directory / "train-000005.tar").unlink()
    loader = train_loader(directory, world_size=1, max_bad_fraction=0.5)
    keys, _ = keys_and_pixels(loader.epoch_iter(0))
    assert len(keys) == loader.batches_per_epoch * 4 == 80 - loader.dropped_per_epoch
    assert loader.stats.corrupt == 2 and loader.stats.lost == 10 and loader.stats.bad_shards == ["train-000005.tar"]
    assert {"train_000003", "train_000004"}.isdisjoint(keys) and not any(k.startswith("train_00005") for k in keys)
    assert loader.stats.repeated == 12  # each bad slot of a batch gets a copy of a good sample
    assert len(set(keys)) == len(keys) - loader.stats.repeated
    assert "train-000005.tar" in capfd.readouterr().err
    with pytest.raises(UserError, match="pack verify"):
        list(train_loader(directory, world_size=1, max_bad_fraction=0.01).epoch_iter(0))


def test_cut_and_garbage_shards_count_their_lost_samples(tmp_path, capfd):
    directory = make_shards(tmp_path, train=20, shard_size=10)
    cut, garbage = directory / "train-000000.tar", directory / "train-000001.tar"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    garbage.write_bytes(b"not a tar file at all" * 100)
    faults = Faults()
    delivered = [s.key for url in (cut, garbage) for s in read_shard(str(url), 10, faults)]
    assert 0 < len(delivered) < 10 and faults.lost == 20 - len(delivered) and faults.corrupt == 0
    assert faults.bad_shards == [cut.name, garbage.name] and garbage.name in capfd.readouterr().err


def test_without_an_index_too_few_shards_says_what_to_do(tmp_path):
    directory = make_shards(tmp_path, train=30, shard_size=30)
    url = f"pipe:cat {directory}/train-000000.tar"  # not indexable: the whole-shard plan
    loader = train_loader(url, world_size=1, num_workers=0, num_samples=30)
    assert loader.plan_name == "whole-shards" and "shuffle buffer" in loader.describe_plan()
    with pytest.raises(UserError, match="without a sample index.*local .tar files"):
        train_loader(url, world_size=2, num_workers=2, num_samples=30)
    assert train_loader(directory, world_size=2, num_workers=2).batches_per_epoch == 3  # indexed: any readers


def test_source_errors(tmp_path, shards):
    with pytest.raises(UserError, match="pack"):
        open_source(str(tmp_path))  # a directory without manifest
    with pytest.raises(UserError, match="--num-samples"):
        open_source(f"pipe:cat {shards}/train-000000.tar")
    with pytest.raises(UserError, match="no 'test' split"):
        open_source(str(shards), "test")
    with pytest.raises(UserError, match="no such directory"):
        open_source(str(tmp_path / "missing"))


def test_foreign_webdataset_shards_through_a_brace_url(tmp_path):
    import webdataset as wds

    rng = np.random.default_rng(0)
    with wds.ShardWriter(str(tmp_path / "part-%06d.tar"), maxcount=10, verbose=0) as sink:
        for i in range(40):
            img = photo_like(40, 36, rng)
            if i % 2:
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                sample = {"__key__": f"s{i:04d}", "png": buf.getvalue(), "cls": i % NUM_CLASSES}
            else:
                sample = {"__key__": f"s{i:04d}", "jpeg": jpeg(img), "cls": i % NUM_CLASSES}
            sink.write(sample)
    with open(tmp_path / "part-000003.tar", "rb") as plain, gzip.open(tmp_path / "part-000003.tar.gz", "wb") as packed:
        packed.write(plain.read())  # webdataset also reads gzipped shards
    (tmp_path / "part-000003.tar").unlink()
    # A brace pattern, a gzipped shard and a pipe: URL, in webdataset's "::" list syntax.
    url = f"{tmp_path}/part-{{000000..000001}}.tar::{tmp_path}/part-000003.tar.gz::pipe:cat {tmp_path}/part-000002.tar"
    source = open_source(url, num_samples=40)
    assert source.classes is None and len(source.urls) == 4
    loader = TrainLoader(source, batch_size=5, image_size=32, num_workers=2, shuffle_buffer=8, with_keys=True)
    keys, _ = keys_and_pixels(loader.epoch_iter(0))
    assert sorted(keys) == [f"s{i:04d}" for i in range(40)] and loader.stats.total() == 0
    val_keys = [k for *_, batch_keys in ValLoader(source, batch_size=6, image_size=32, num_workers=2)
                for k in batch_keys if k]
    assert sorted(val_keys) == sorted(keys)


def test_foreign_local_tars_get_an_index_built_and_cached(tmp_path, monkeypatch):
    import webdataset as wds

    from hrnet_fast.data import indexes
    from hrnet_fast.shardformat.index import read_index, scan_file

    rng = np.random.default_rng(0)
    with wds.ShardWriter(str(tmp_path / "part-%06d.tar"), maxcount=10, verbose=0) as sink:
        for i in range(25):  # class-sorted, as other tools often write them
            sink.write({"__key__": f"s{i:04d}", "jpg": jpeg(photo_like(40, 36, rng)), "cls": i * NUM_CLASSES // 25})
    url = f"{tmp_path}/part-{{000000..000002}}.tar"
    source = open_source(url)  # no --num-samples needed: the indexes count
    assert source.indexed and source.exact and source.shard_sizes == [10, 10, 5]
    tars = sorted(tmp_path.glob("part-*.tar"))
    for tar in tars:
        assert read_index(tar.with_suffix(".idx")).matches(scan_file(tar))
    monkeypatch.setattr(indexes, "scan_file", lambda path: pytest.fail(f"{path} scanned again"))
    assert open_source(url).shard_sizes == [10, 10, 5]  # read from the cache
    monkeypatch.undo()
    with open(tars[2], "ab") as f:  # the tar changed size: its cached index is stale and rebuilt
        f.write(bytes(10240))
    assert read_index(tars[2].with_suffix(".idx")).tar_bytes != tars[2].stat().st_size
    assert open_source(url).shard_sizes == [10, 10, 5]
    assert read_index(tars[2].with_suffix(".idx")).tar_bytes == tars[2].stat().st_size
    for idx in tmp_path.glob("*.idx"):
        idx.unlink()
    monkeypatch.setattr(indexes.os, "access", lambda path, mode: False)  # a read-only folder: kept in memory
    source = open_source(url, num_samples=25)
    assert source.indexed and not list(tmp_path.glob("*.idx"))
    loader = TrainLoader(source, batch_size=4, image_size=32, num_workers=2, with_keys=True, block=2)
    keys, _ = keys_and_pixels(loader.epoch_iter(0))
    assert loader.plan_name == "sample-ranges" and len(keys) == len(set(keys)) == 24 and loader.stats.total() == 0


@pytest.mark.parametrize("backend", ["simplejpeg", "pil"])
def test_decode_val_image_matches_torchvision_resize_center_crop(backend, monkeypatch):
    import torchvision.transforms as T

    from hrnet_fast.data import decode

    if backend == "pil":
        monkeypatch.setattr(decode, "simplejpeg", None)
    elif decode.simplejpeg is None:
        pytest.skip("simplejpeg not installed")

    data = jpeg(photo_like(64, 48, np.random.default_rng(3)))
    reference = np.asarray(T.Compose([T.Resize(37), T.CenterCrop(32)])(Image.open(io.BytesIO(data)).convert("RGB")))
    for source in (data, Image.open(io.BytesIO(data))):
        pixels = decode_val_image(source, 32)
        assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
        assert np.abs(pixels.astype(int) - reference).max() <= 1
    gray = Image.fromarray(np.full((50, 40), 90, np.uint8))
    assert decode_val_image(jpeg(gray), 32).shape == (32, 32, 3)
    assert center_crop_box(400, 300, 224, 0.875)[3] - center_crop_box(400, 300, 224, 0.875)[1] == pytest.approx(
        224 * 300 / 256)


def torchvision_fraction(width: int, height: int) -> float:
    import torchvision.transforms as T

    _, _, h, w = T.RandomResizedCrop.get_params(torch.empty(3, height, width), [0.08, 1.0], [3 / 4, 4 / 3])
    return w * h / (width * height)


def test_random_resized_crop_boxes_follow_torchvision():
    rng = np.random.default_rng(0)
    width, height = 500, 375
    fractions, ratios = [], []
    for _ in range(2000):
        left, top, w, h = random_resized_crop_box(width, height, rng)
        assert 0 <= left and left + w <= width and 0 <= top and top + h <= height
        fractions.append(w * h / (width * height))
        ratios.append(w / h)
    assert 0.08 * 0.97 <= min(fractions) and max(fractions) <= 1.0
    assert 3 / 4 * 0.97 <= min(ratios) and max(ratios) <= 4 / 3 * 1.03
    torch.manual_seed(0)
    reference = [torchvision_fraction(width, height) for _ in range(2000)]
    assert abs(np.mean(fractions) - np.mean(reference)) < 0.03  # same distribution, not just bounds
    # An extreme aspect never fits: torchvision's fallback is the central crop at the bound ratio.
    assert random_resized_crop_box(1000, 10, rng) == (493, 0, 13, 10)
    pixels = decode_train_image(jpeg(photo_like(64, 48, rng)), 32, rng)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


def test_bench_loader_prints_json(shards):
    from hrnet_fast.commands.bench_loader import bench_loader

    result = CliRunner().invoke(bench_loader, ["--shards", str(shards), "--workers", "0", "--batch-size", "4",
                                               "--batches", "3", "--warmup", "1", "--image-size", "32",
                                               "--shuffle-buffer", "8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["images_per_s"] > 0 and report["dropped_per_epoch"] == TRAIN - 28 * 4 == 3
    assert report["plan"] == "sample-ranges"


def test_no_global_random_state_used(shards):
    torch.manual_seed(123)
    np.random.seed(123)
    first, _ = keys_and_pixels(train_loader(shards, num_workers=0).epoch_iter(0))
    torch.manual_seed(7)
    np.random.seed(7)
    second, _ = keys_and_pixels(train_loader(shards, num_workers=0).epoch_iter(0))
    assert first == second


GROUP_SIGTERM_CHILD = """
import signal, sys, time
from hrnet_fast.data import TrainLoader, open_source
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))  # the trainer's: note it, save, exit 0
loader = TrainLoader(open_source(sys.argv[1], "train"), batch_size=2, image_size=32, num_workers=2,
                     shuffle_buffer=16, prefetch_factor=1)
batches = loader.epoch_iter(0)  # 56 batches
print("starting", flush=True)
while not stop:  # a step takes a while
    next(batches)
    time.sleep(0.01)
for _ in range(8):  # more than the 2 batches queued: the workers must still be alive
    next(batches)
print("ok")
"""


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.2])
def test_workers_outlive_a_sigterm_to_the_process_group(shards, delay):
    """torchrun stops a rank by signalling its process group; the workers must keep delivering
    (the main process saves its checkpoint and stops them itself), also when the signal comes
    while they start. Without their own process group the main process hangs or raises."""
    child = subprocess.Popen([sys.executable, "-c", GROUP_SIGTERM_CHILD, str(shards)], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert child.stdout.readline() == "starting\n"
        time.sleep(delay)
        os.killpg(child.pid, signal.SIGTERM)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0 and out == "ok\n", err[-500:]
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
