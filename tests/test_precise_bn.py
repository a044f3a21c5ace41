"""Precise BN: running statistics become the plain average over the given batches; nothing else changes."""
import contextlib

import torch
from torch import nn

from hrnet_fast.precise_bn import recompute_bn_stats


def test_running_stats_become_the_average_of_the_batches_and_settings_are_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    weights = [p.clone() for p in model.parameters()]
    batches = [(torch.randn(8, 3, 5, 5) * (i + 1) + i, torch.zeros(8)) for i in range(5)]
    used = recompute_bn_stats(model, iter(batches), 3, contextlib.nullcontext)
    with torch.no_grad():
        outputs = [model[0](x) for x, _ in batches[:3]]
    bn = model[1]
    assert used == 3
    assert torch.allclose(bn.running_mean, torch.stack([y.mean((0, 2, 3)) for y in outputs]).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack([y.var((0, 2, 3)) for y in outputs]).mean(0), rtol=1e-4)
    assert bn.momentum == 0.1 and not model.training
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
