"""Timing device work honestly: start and stop at a device sync, so queued kernels are counted."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch

from hrnet_fast.device import Device


def time_steps(step: Callable[[], torch.Tensor], device: Device,
               steps: int) -> tuple[float, torch.Tensor | None]:
    """Seconds for `steps` calls of `step` between device syncs, and the last call's result
    (None when `steps` is 0)."""
    device.synchronize()
    start = time.perf_counter()
    result: torch.Tensor | None = None
    for _ in range(steps):
        result = step()
    device.synchronize()
    return time.perf_counter() - start, result


def warm_up_steps(step: Callable[[], torch.Tensor], device: Device, steps: int) -> tuple[float, float]:
    """Run `steps` untimed calls: their seconds, and the device's peak memory (MB) over all but
    the first.

    The first call is left out of the peak for cuDNN's autotuning, which tries algorithms with
    large scratch buffers. The later ones count because with --graph they are the last time the
    activations are allocated: replays run in the graph's private pool, which allocates nothing,
    so the timed steps alone would show weights, gradients and optimizer state only."""
    seconds, _ = time_steps(step, device, min(steps, 1))
    device.reset_peak_memory()
    if steps <= 1:
        return seconds, 0.0
    rest, _ = time_steps(step, device, steps - 1)
    return seconds + rest, device.max_memory_allocated() / 2**20
