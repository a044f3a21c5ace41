"""One training step: eager, or forward + backward replayed from a captured device graph.

HRNet launches thousands of small kernels per step (four branches, many low-resolution convs);
when the host cannot launch them as fast as the device runs them, the device idles. A captured
graph launches the whole forward, loss and backward at once. The optimizer step stays eager:
GradScaler's finite check may sync with the host on non-fused optimizers, which capture forbids,
and a fused SGD step is a handful of launches anyway. Its learning rate stays a plain float, so
the schedule needs nothing special.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hrnet_fast.errors import UserError
from hrnet_fast.precision import MixedPrecision

# Eager steps before capture: cuDNN autotuning, lazy initialisation and the allocator settle
# first (the PyTorch CUDA-graph notes ask for a few; DDP would need 11, but it is not used).
GRAPH_WARMUP_STEPS = 3


def forward_loss(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, criterion: nn.Module,
                 precision: MixedPrecision) -> torch.Tensor:
    """Forward in the precision's autocast, loss in fp32. `labels` are class indices [B], or
    class probabilities [B, C] float (soft targets, from Mixup / CutMix)."""
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
    # In place, not set_to_none: Ascend's fused optimizers move the gradients into one combined
    # buffer at their first step, keep using it, and refuse set_to_none.
    optimizer.zero_grad(set_to_none=False)
    return loss.detach()


@dataclass(frozen=True)
class _StaticBuffers:
    """What a captured step reads and writes at fixed addresses: its input batch (labels: class
    indices, or soft targets [B, C] with mixing), and its loss."""

    x: torch.Tensor
    labels: torch.Tensor
    loss: torch.Tensor


@dataclass
class _Capture:
    """One input shape's static buffers, the calls it has had, and its graph once captured."""

    static: _StaticBuffers
    calls: int = 0
    replay: Callable[[], None] | None = None


class GraphedStep:
    """`train_step` with forward, loss and backward captured once per input shape and replayed
    every step after.

    Everything the graph writes lives at addresses fixed before the first step (static input
    buffers, the gradients, the loss) and is written in place, so replaying the kernels and
    rerunning the Python are the same work. The first GRAPH_WARMUP_STEPS calls of a shape run that
    work eagerly on a side stream (cuDNN autotuning, lazy initialisation); the next captures it,
    and every call copies its batch into that shape's static buffers and replays. A shape that
    comes back (progressive resizing) replays its graph again; all graphs write the same
    gradients. Steps are real from the first call on: the same math, in the same order, as
    `train_step`.

    With several processes there is no DDP (its hooks run inside backward): `reduce_gradients`
    averages the optimizer's gradients, which sit in one flat buffer per dtype, with a single
    all-reduce each between the replay and the optimizer step.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module, precision: MixedPrecision,
                 optimizer: torch.optim.Optimizer, warmup: int = GRAPH_WARMUP_STEPS,
                 reduce_gradients: Callable[[list[torch.Tensor]], None] | None = None) -> None:
        reason = precision.device.graph_support()
        if reason:
            raise UserError(reason)
        self.model, self.criterion, self.precision, self.optimizer = model, criterion, precision, optimizer
        if warmup < 1:  # lazy state (the loss scale, cuDNN's choices) must exist before capture
            raise ValueError("a captured step needs at least one eager warm-up step")
        self.device = precision.device
        self.warmup = warmup
        self._warmup_stream = self.device.new_stream()  # one stream: its cached blocks are reused
        self.reduce_gradients = reduce_gradients
        self.calls = 0
        self._captures: dict[tuple[torch.Size, torch.Size], _Capture] = {}  # by (x, labels) shape
        self._model_gradients: list[torch.Tensor] = []
        self._flat_gradients: list[torch.Tensor] = []
        self._gradient_addresses: list[int] = []

    @property
    def captured(self) -> bool:
        """Whether a graph has been captured (for any shape)."""
        return any(capture.replay is not None for capture in self._captures.values())

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        try:
            capture = self._capture_for(x, labels)
            capture.calls += 1
            static = capture.static
            static.x.copy_(x)
            static.labels.copy_(labels)
            if capture.replay is not None:
                capture.replay()
            elif capture.calls <= self.warmup:
                with self.device.side_stream(self._warmup_stream):
                    self._work(static)
            else:
                self.device.synchronize()
                capture.replay = self.device.capture(lambda: self._work(static))
                capture.replay()
            if self.reduce_gradients is not None:
                self.reduce_gradients(self._flat_gradients)
            self.precision.step(self.optimizer)
            if capture.calls <= self.warmup + 1:
                self._check_gradients_stay()
        except RuntimeError as exc:
            if self.device.is_out_of_memory(exc):
                raise _out_of_memory(self.precision, x.shape[0]) from None
            raise
        return static.loss.clone()

    def _capture_for(self, x: torch.Tensor, labels: torch.Tensor) -> _Capture:
        """This shape's capture, new (with its static buffers) at its first call. The gradients
        are allocated once, at the very first call, and shared by every shape's graph."""
        if not self._captures:
            self._model_gradients, self._flat_gradients = self.precision.allocate_gradients()
            self._gradient_addresses = self._optimizer_gradient_addresses()
        key = (x.shape, labels.shape)
        if key not in self._captures:
            static = _StaticBuffers(torch.empty_like(x), torch.empty_like(labels), torch.zeros((), device=x.device))
            self._captures[key] = _Capture(static)
        return self._captures[key]

    def _optimizer_gradient_addresses(self) -> list[int]:
        return [p.grad.data_ptr() if p.grad is not None else 0
                for group in self.optimizer.param_groups for p in group["params"]]

    def _check_gradients_stay(self) -> None:
        """The optimizer must read the gradients where the graph writes them. One that moves them
        (into a combined buffer of its own) would train on stale gradients without a word."""
        if self._optimizer_gradient_addresses() != self._gradient_addresses:
            raise RuntimeError(f"{type(self.optimizer).__name__} moved gradients out of the buffers the "
                               "captured step writes: use an optimizer that updates them in place")

    def _work(self, static: _StaticBuffers) -> None:
        """Forward, loss and backward on the static buffers: what the graph records."""
        loss = forward_loss(self.model, static.x, static.labels, self.criterion, self.precision)
        self.precision.backward_in_place(loss, self._model_gradients)
        static.loss.copy_(loss.detach())


Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_step(model: nn.Module, criterion: nn.Module, precision: MixedPrecision,
              optimizer: torch.optim.Optimizer, graph: bool = False,
              reduce_gradients: Callable[[list[torch.Tensor]], None] | None = None) -> Step:
    """`step(x, labels) -> loss` as train, bench and the benchmarks run it: eager or captured
    (with `reduce_gradients` averaging gradients across processes when captured without DDP)."""
    if graph:
        return GraphedStep(model, criterion, precision, optimizer, reduce_gradients=reduce_gradients)
    return lambda x, labels: train_step(model, x, labels, criterion, precision, optimizer)
