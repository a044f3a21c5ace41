"""One training step: eager, or forward + backward replayed from a captured device graph.

HRNet launches thousands of small kernels per step (four branches, many low-resolution convs);
when the host cannot launch them as fast as the device runs them, the device idles. A captured
graph launches the whole forward, loss and backward at once. The optimizer step stays eager:
GradScaler's finite check may sync with the host on non-fused optimizers, which capture forbids,
and a fused SGD step is a handful of launches anyway. Its learning rate stays a plain float, so
the schedule needs nothing special.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from hrnet_fast.errors import UserError
from hrnet_fast.precision import MixedPrecision

# Eager steps before capture: cuDNN autotuning, lazy initialisation and the allocator settle
# first (the PyTorch CUDA-graph notes ask for a few; DDP would need 11, it is not graphed).
GRAPH_WARMUP_STEPS = 3


def forward_loss(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, criterion: nn.Module,
                 precision: MixedPrecision) -> torch.Tensor:
    """Forward in the precision's autocast, loss in fp32."""
    with precision.autocast():
        logits = model(x)
    return criterion(logits.float(), labels)


def _out_of_memory(precision: MixedPrecision, batch: int) -> UserError:
    return UserError(f"out of memory at batch size {batch} per device on {precision.device.describe()}: "
                     f"try --batch-size {max(batch // 2, 1)}")


def train_step(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, criterion: nn.Module,
               precision: MixedPrecision, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """Forward, loss, scaled backward, optimizer step; returns the detached loss (no sync)."""
    try:
        loss = forward_loss(model, x, labels, criterion, precision)
        precision.backward(loss)
        precision.step(optimizer)
    except RuntimeError as exc:
        if precision.device.is_out_of_memory(exc):
            raise _out_of_memory(precision, x.shape[0]) from None
        raise
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


class GraphedStep:
    """`train_step` with forward, loss and backward captured once and replayed every step after.

    The first GRAPH_WARMUP_STEPS calls train eagerly on a side stream. The next call copies its
    batch into static input buffers, captures, and from then on every call copies its batch into
    those buffers and replays. Everything the graph writes lives at addresses fixed before
    capture (inputs, gradients, the loss) and is written in place, so replaying the kernels and
    rerunning the Python are the same work. Steps are real from the first call on: the same
    math, in the same order, as `train_step`.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module, precision: MixedPrecision,
                 optimizer: torch.optim.Optimizer, warmup: int = GRAPH_WARMUP_STEPS) -> None:
        reason = precision.device.graph_support()
        if reason:
            raise UserError(reason)
        self.model, self.criterion, self.precision, self.optimizer = model, criterion, precision, optimizer
        self.device = precision.device
        self.warmup = warmup
        self.calls = 0
        self._replay: Optional[Callable[[], None]] = None
        self._x: Optional[torch.Tensor] = None
        self._labels: Optional[torch.Tensor] = None
        self._loss: Optional[torch.Tensor] = None
        self._model_gradients: list[torch.Tensor] = []

    @property
    def captured(self) -> bool:
        return self._replay is not None

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self._replay is None and self.calls <= self.warmup:
            with self.device.side_stream():
                return train_step(self.model, x, labels, self.criterion, self.precision, self.optimizer)
        try:
            if self._replay is None:
                self._capture(x, labels)
            self._fill(x, labels)
            self._replay()
            self.precision.step(self.optimizer)
        except RuntimeError as exc:
            if self.device.is_out_of_memory(exc):
                raise _out_of_memory(self.precision, x.shape[0]) from None
            raise
        return self._loss.clone()

    def _fill(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        if x.shape != self._x.shape or labels.shape != self._labels.shape:
            raise RuntimeError(f"a captured step needs static shapes: got {tuple(x.shape)}, "
                               f"captured {tuple(self._x.shape)}")
        self._x.copy_(x)
        self._labels.copy_(labels)

    def _capture(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        """Record forward, loss and backward on static buffers; nothing runs until replay."""
        self._x, self._labels = torch.empty_like(x), torch.empty_like(labels)
        self._loss = torch.zeros((), device=x.device)
        self._model_gradients = self.precision.allocate_gradients()
        self.device.synchronize()

        def work() -> None:
            loss = forward_loss(self.model, self._x, self._labels, self.criterion, self.precision)
            self.precision.backward_in_place(loss, self._model_gradients)
            self._loss.copy_(loss.detach())

        self._replay = self.device.capture(work)


Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_step(model: nn.Module, criterion: nn.Module, precision: MixedPrecision,
              optimizer: torch.optim.Optimizer, graph: bool = False) -> Step:
    """`step(x, labels) -> loss` as train, bench and the benchmarks run it: eager or captured."""
    if graph:
        return GraphedStep(model, criterion, precision, optimizer)
    return lambda x, labels: train_step(model, x, labels, criterion, precision, optimizer)
