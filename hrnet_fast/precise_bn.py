"""Precise BatchNorm: running statistics recomputed for the current weights before validation.

Why: BatchNorm's running statistics are an exponential average (momentum 0.1, about ten steps of
memory) of batch statistics taken while the weights move. When they move fast (warm-up, a high
lr, short runs on small data) the average trails them, and eval mode normalizes with stale
statistics whose error compounds over HRNet's ~90 BatchNorm layers. On the digits demo after 21
steps the first layer's batch variance was 3.7× its running variance and eval mode scored
chance (10 %), while the same weights with recomputed statistics scored 54 %.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch
from torch import nn


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches: Iterable, num_batches: int,
                       autocast: Callable[[], AbstractContextManager]) -> int:
    """Replace every BatchNorm's running mean and variance by their plain average over the first
    `num_batches` of `batches` ((x, ...) tuples), forwarding in train mode without gradients.
    Weights are untouched; returns how many batches were used."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches seen
    model.train()
    used = 0
    try:
        for x, *_ in itertools.islice(batches, num_batches):
            with autocast():
                model(x)
            used += 1
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.train(was_training)
    return used
