"""Timing device work honestly: start and stop at a device sync, so queued kernels are counted."""
from __future__ import annotations

import time
from typing import Callable

import torch

from hrnet_fast.device import Device


def time_steps(step: Callable[[], torch.Tensor], device: Device, steps: int) -> tuple[float, torch.Tensor]:
    """Seconds for `steps` calls of `step` between device syncs, and the last call's result."""
    device.synchronize()
    start = time.perf_counter()
    result = None
    for _ in range(steps):
        result = step()
    device.synchronize()
    return time.perf_counter() - start, result
