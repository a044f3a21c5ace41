"""Exponential moving average of the weights (`--ema-decay`), kept on the device beside the model.

Why: late in a run, and in short runs above all, the average of the weights over the last few
thousand steps scores better than the weights of any one step (the lr noise averages out), at the
cost of one more copy of the weights and a few fused launches a step.

What it follows is timm's `ModelEmaV3` with its defaults and its warm-up on: every floating entry
of the state dict (parameters and the BatchNorm running statistics: `exclude_buffers=False`) is
averaged, integer ones (`num_batches_tracked`) are copied; the decay at optimizer step n (1 for the
first step, as timm's train.py counts `num_updates`) is `decay_at(target, n)`, timm's
`get_decay(n)` with `use_warmup=True, warmup_gamma=1, warmup_power=3/4`: 0 at the first step (a
copy of the weights), then 1 - n**-3/4, capped at the target. Power 3/4 is the value timm's
docstring (after @crowsonkb) gives for runs under a million steps: 0.999 at 10 k steps, 0.9998
at 85 k; timm's own default, 2/3, takes 350 k steps to reach 0.9998.

Two differences from timm, both for the devices here: parameters are averaged from the tensors
the optimizer updates (the fp32 masters under o2, so the average is not lost to fp16 rounding),
and the update runs eagerly after each optimizer step, outside a captured graph (--graph), as
`_foreach_lerp_` over all tensors at once: a few launches and no host sync.
"""
from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

EMA_WARMUP_POWER = 0.75


def decay_at(target: float, step: int) -> float:
    """The EMA decay after optimizer step `step` (1-based): timm's ModelEmaV3.get_decay(step) with
    use_warmup=True, warmup_gamma=1, warmup_power=EMA_WARMUP_POWER, min_decay=0."""
    updates = step - 1
    if updates <= 0:
        return 0.0
    return min(1.0 - (1.0 + updates) ** -EMA_WARMUP_POWER, target)


class WeightEma:
    """The averaged weights of `model`: `module`, a copy of it (same alignment, dtypes and memory
    format) to evaluate, and fp32 averages of its parameters (the module's own where they are
    fp32; under o2 its fp16 weights are refreshed from them by `eval_module`).

    `to_optimizer` maps each parameter to the tensor the optimizer updates (its fp32 master under
    o2), which `update` averages."""

    def __init__(self, model: nn.Module, to_optimizer: Callable[[nn.Parameter], torch.Tensor], decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._sources = [to_optimizer(p) for p in model.parameters()]
        self._params: list[torch.Tensor] = []
        self._low: list[tuple[torch.Tensor, torch.Tensor]] = []  # o2: (fp16 module weight, its fp32 average)
        for param, source in zip(self.module.parameters(), self._sources, strict=True):
            if param.dtype == source.dtype:  # the module's own parameter holds the average
                self._params.append(param.detach())
            else:
                average = source.detach().clone()
                self._params.append(average)
                self._low.append((param.detach(), average))
        pairs = list(zip(self.module.buffers(), model.buffers(), strict=True))
        self._averaged = [(mine, theirs) for mine, theirs in pairs if mine.is_floating_point()]
        self._copied = [(mine, theirs) for mine, theirs in pairs if not mine.is_floating_point()]

    @torch.no_grad()
    def copy_model(self) -> None:
        """Start over from the model's current weights (a run resumed from a checkpoint without EMA)."""
        torch._foreach_copy_(self._params, self._sources)
        self._copy_buffers(self._averaged + self._copied)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Move the averages towards the model after optimizer step `step` (1-based)."""
        weight = 1.0 - decay_at(self.decay, step)
        torch._foreach_lerp_(self._params, self._sources, weight)
        if self._averaged:
            torch._foreach_lerp_([m for m, _ in self._averaged], [t for _, t in self._averaged], weight)
        self._copy_buffers(self._copied)

    @staticmethod
    def _copy_buffers(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        if pairs:
            torch._foreach_copy_([m for m, _ in pairs], [t for _, t in pairs])

    @torch.no_grad()
    def eval_module(self) -> nn.Module:
        """`module` with the current averages in its own dtypes, ready to evaluate."""
        if self._low:
            torch._foreach_copy_([p for p, _ in self._low], [a for _, a in self._low])
        return self.module

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averages as the model's state dict, fp32 parameters (what checkpoints keep)."""
        values = dict(zip((name for name, _ in self.module.named_parameters()), self._params))
        values.update(self.module.named_buffers())
        return {key: values[key].detach().clone() for key in self.module.state_dict()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what `state_dict` returned (padded to the model's shapes), exactly."""
        for (name, _), average in zip(self.module.named_parameters(), self._params):
            average.copy_(state[name])
        for name, buffer in self.module.named_buffers():
            buffer.copy_(state[name])
