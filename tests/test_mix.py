"""Mixup / CutMix: timm's Mixup on the same draws, soft targets through the eager and captured
steps, draws keyed by the step, and through the trainer: a resumed mixed run ends where the straight one does."""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from test_step import CLASSES, _batches, _build, stand_in  # noqa: F401 (stand_in: a fixture)
from test_train import train, weights
from torch import nn

from hrnet_fast.mix import BatchMix
from hrnet_fast.step import GraphedStep, train_step

EPS32 = torch.finfo(torch.float32).eps


class _NumpyDrawingFrom:
    """numpy, with timm's np.random calls answered by `rng`: np.random's rand / beta / randint
    are rng's random / beta / integers, the calls `BatchMix.draw` makes in the same order."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.random = types.SimpleNamespace(rand=rng.random, beta=rng.beta,
                                            randint=lambda low, high, size=None: rng.integers(low, high))

    def __getattr__(self, name: str):
        return getattr(np, name)


SETTINGS = [dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5),
            dict(mixup_alpha=0.2, cutmix_alpha=0.0, prob=0.6, switch_prob=0.5),
            dict(mixup_alpha=0.0, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5)]


@pytest.mark.parametrize("settings", SETTINGS)
def test_same_draws_same_batch_and_targets_as_timms_mixup(settings, monkeypatch):
    """Blends, boxes (on a non-square image, so height and width cannot swap) and skipped batches:
    the images equal timm's (the same kernels) and the targets within fp32 rounding."""
    import timm.data.mixup as timm_mixup

    ours = BatchMix(**settings, label_smoothing=0.1, num_classes=CLASSES, seed=0)
    theirs = timm_mixup.Mixup(**settings, label_smoothing=0.1, num_classes=CLASSES)
    generator = torch.Generator().manual_seed(0)
    kinds = set()
    for key in range(40):
        x = torch.randn(6, 3, 12, 20, generator=generator)
        labels = torch.randint(0, CLASSES, (6,), generator=generator)
        draw = ours.draw(np.random.default_rng(key), 12, 20)
        kinds.add("skip" if draw.lam == 1.0 else "cutmix" if draw.box else "mixup")
        got_x, got_targets = ours.apply(x.clone(), labels, draw)
        monkeypatch.setattr(timm_mixup, "np", _NumpyDrawingFrom(np.random.default_rng(key)))
        want_x, want_targets = theirs(x.clone(), labels)
        assert torch.equal(got_x, want_x), key
        assert got_targets.dtype == torch.float32 and got_targets.shape == (6, CLASSES)
        assert torch.allclose(got_targets, want_targets, rtol=0, atol=4 * EPS32), key
    expected = {"skip"} if settings["prob"] < 1 else set()
    expected |= {"mixup"} if settings["mixup_alpha"] else set()
    expected |= {"cutmix"} if settings["cutmix_alpha"] else set()
    assert kinds == expected  # every branch this setting has was taken


def test_draws_are_keyed_by_the_step():
    mix = BatchMix(0.8, 1.0, 1.0, 0.5, 0.0, CLASSES, seed=3)
    draws = [mix.draw(np.random.default_rng([3, 0, epoch, step]), 32, 32) for epoch in (0, 1) for step in (0, 1, 2)]
    assert len(set(draws)) == len(draws)  # another step or epoch draws anew
    x, labels = next(_batches(1, torch.float32))
    first, again = mix(x.clone(), labels, 1, 2), mix(x.clone(), labels, 1, 2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # the same step draws the same


def test_unmixed_soft_targets_give_label_smoothings_loss():
    """lam = 1: the soft targets are label smoothing's, so the loss is CrossEntropyLoss(label_smoothing)'s."""
    mix = BatchMix(0.2, 0.0, 1.0, 0.5, 0.1, CLASSES, seed=0)
    logits = torch.randn(6, CLASSES, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    soft = nn.CrossEntropyLoss()(logits, mix.targets(labels, 1.0))
    hard = nn.CrossEntropyLoss(label_smoothing=0.1)(logits, labels)
    assert torch.allclose(soft, hard, rtol=16 * EPS32)
    assert torch.allclose(mix.targets(labels, 0.3).sum(1), torch.ones(6), rtol=0, atol=4 * EPS32)


def _mixed_batches(steps: int, dtype: torch.dtype):
    mix = BatchMix(0.8, 1.0, 1.0, 0.5, 0.1, CLASSES, seed=0)
    for step, (x, labels) in enumerate(_batches(steps, dtype)):
        yield mix(x, labels, 0, step)


@pytest.mark.parametrize("mode", ["fp32", "o2"])
def test_soft_targets_through_the_eager_and_the_captured_step(stand_in, mode):  # noqa: F811 (the fixture)
    steps, warmup = 4, 1
    criterion = nn.CrossEntropyLoss()
    eager_model, eager_precision, eager_optimizer = _build(mode)
    eager = [train_step(eager_model, x, t, criterion, eager_precision, eager_optimizer)
             for x, t in _mixed_batches(steps, eager_precision.input_dtype)]
    model, precision, optimizer = _build(mode)
    step = GraphedStep(model, criterion, precision, optimizer, warmup=warmup)
    graphed = [step(x, t) for x, t in _mixed_batches(steps, precision.input_dtype)]
    assert stand_in.replays == steps - warmup and all(loss.isfinite() for loss in graphed)
    assert torch.equal(torch.stack(graphed), torch.stack(eager))
    want, got = eager_precision.master_state_dict(eager_model), precision.master_state_dict(model)
    assert all(torch.equal(value, got[key]) for key, value in want.items())


def test_a_resumed_mixed_run_ends_with_the_straight_runs_weights(tiny_shards, tmp_path):
    args = ("--mixup", "0.8", "--cutmix", "1.0", "--label-smoothing", "0.1", "--seed", "2", "--precision", "fp32",
            "--epochs", "1", "--stop-step", "6")
    train(tiny_shards, tmp_path / "straight", *args)
    train(tiny_shards, tmp_path / "resumed", *args[:-1], "3")
    train(tiny_shards, tmp_path / "resumed", *args, "--resume", "auto")
    train(tiny_shards, tmp_path / "unmixed", *args[4:])
    a, b, unmixed = (weights(tmp_path / run / "checkpoints/last.pt") for run in ("straight", "resumed", "unmixed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], unmixed["classifier.weight"])  # the mixing did happen
