"""CUDA-only checks: real graph capture, the side-stream prefetcher, fused SGD, `train --graph`.

They run wherever torch sees a GPU (the device machine: `benchmarks/gpu.sh` runs them first) and
are skipped on CPU-only machines, where tests/test_step.py checks the same step logic with a
stand-in graph.
"""
from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli
from test_step import _batches, _build
from torch import nn

from hrnet_fast.data import DevicePrefetcher
from hrnet_fast.device import Device
from hrnet_fast.step import GraphedStep, train_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def cuda() -> Device:
    device = Device("cuda", 0)
    device.activate()
    return device


@pytest.fixture
def deterministic():
    """Eager and replayed steps must pick the same convolution algorithms to agree closely."""
    saved = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved


@pytest.mark.parametrize("mode", ["fp32", "amp", "bf16", "o2"])
def test_captured_steps_match_eager_steps(cuda, deterministic, mode):
    steps = 8
    criterion = nn.CrossEntropyLoss()
    eager = _build(mode, device=cuda, lr=0.01)
    for x, y in _batches(steps, eager[1].input_dtype, device=cuda, size=64, batch=8):
        train_step(eager[0], x, y, criterion, eager[1], eager[2])
    model, precision, optimizer = _build(mode, device=cuda, lr=0.01)
    step = GraphedStep(model, criterion, precision, optimizer)
    for x, y in _batches(steps, precision.input_dtype, device=cuda, size=64, batch=8):
        step(x, y)
    torch.cuda.synchronize()
    assert step.captured
    want, got = eager[1].master_state_dict(eager[0]), precision.master_state_dict(model)
    for key, value in want.items():
        if value.is_floating_point():
            scale = value.abs().max().clamp_min(1e-3)
            assert (value.float() - got[key].float()).abs().max() <= 1e-4 * scale, key
    assert int(precision.skipped) == int(eager[1].skipped)


def test_the_sgd_is_fused(cuda):
    optimizer = cuda.sgd([nn.Parameter(torch.zeros(4, device="cuda"))], lr=0.1, momentum=0.9)
    assert optimizer.defaults.get("fused") is True


def test_the_prefetcher_normalizes_on_the_device(cuda):
    images = torch.randint(0, 256, (4, 16, 16, 3), dtype=torch.uint8)
    labels = torch.arange(4)
    (x, y), = list(DevicePrefetcher([(images, labels)], cuda))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    expected = (images.permute(0, 3, 1, 2).float() - mean) / std
    assert x.is_cuda and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x.cpu(), expected, atol=1e-5) and torch.equal(y.cpu(), labels)


def test_train_with_graph_capture(tmp_path):
    from shardgen import make_shards  # generated images: no scikit-learn needed on the GPU machine

    shards = make_shards(tmp_path / "shards", train=256, val=64, shard_size=32, num_classes=10)
    out = tmp_path / "run"
    result = run_cli("-m", "hrnet_fast", "train", "--shards", str(shards), "--out", str(out),
                     "--model", "hrnet_w18_small_v1", "--image-size", "64", "--batch-size", "16", "--workers", "2",
                     "--device", "cuda", "--epochs", "2", "--log-interval", "5", "--graph")
    assert "FPS" in result.stdout and "graph capture included" in result.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    assert len([r for r in records if r["kind"] == "epoch"]) == 2
    assert all(r["loss"] == r["loss"] and r["skipped_steps"] < 5 for r in train_records)  # finite, few skips
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert state["step"] == train_records[-1]["step"]


def test_bench_step_with_graph(cuda):
    result = run_cli("-m", "hrnet_fast", "bench", "step", "--model", "hrnet_w18_small_v1", "--batch-size", "32",
                     "--image-size", "64", "--steps", "5", "--graph", "--device", "cuda", "--json")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["graph"] and report["images_per_s"] > 0 and report["warmup"] >= 4


def test_resume_a_channel_aligned_run_with_fused_sgd(tmp_path):
    """Padded momentum must come back with its channels_last parameter's strides, or fused SGD's
    first step after the resume refuses it (small_v2's widths 18 and 36 are padded to 24 and 40)."""
    from shardgen import make_shards

    shards = make_shards(tmp_path / "shards", train=256, val=32, shard_size=32, num_classes=10)
    out = tmp_path / "run"
    args = ["-m", "hrnet_fast", "train", "--shards", str(shards), "--out", str(out), "--model", "hrnet_w18_small_v2",
            "--image-size", "64", "--batch-size", "16", "--workers", "2", "--device", "cuda",
            "--align-channels", "8", "--log-interval", "2"]
    run_cli(*args, "--stop-step", "3")
    result = run_cli(*args, "--stop-step", "6", "--resume", "auto")
    assert "resumed from" in result.stdout
    assert torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["step"] == 6
