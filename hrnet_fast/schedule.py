"""Learning rate as a pure function of (config, fractional epoch): nothing to save or restore.

Every schedule starts with the same linear warm-up (`warmup_epochs`, 0: none) and then follows
its shape; SCHEDULES is the one table of them (config validates against it, --help lists it).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config validates schedule names against SCHEDULES: no import back at run time
    from hrnet_fast.config import TrainConfig


def _step(cfg: TrainConfig, epoch: float) -> float:
    return cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m)


def _after_warmup(cfg: TrainConfig, epoch: float) -> float:
    """How far `epoch` is from the end of warm-up (0) to the last epoch (1)."""
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
    return min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)


def _cosine(cfg: TrainConfig, epoch: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * _after_warmup(cfg, epoch)))


def _linear(cfg: TrainConfig, epoch: float) -> float:
    return 1.0 - _after_warmup(cfg, epoch)


@dataclass(frozen=True)
class Schedule:
    """A schedule's shape after warm-up: the peak lr's factor at a fractional epoch; `about`
    is its line in --help."""

    about: str
    factor: Callable[[TrainConfig, float], float]


SCHEDULES: dict[str, Schedule] = {
    "step": Schedule("×gamma at each milestone epoch", _step),
    "cosine": Schedule("cosine decay to 0 at the last epoch", _cosine),
    "linear": Schedule("linear decay to 0 at the last epoch (FFCV's ImageNet schedule)", _linear),
}


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Linear warm-up from 0 to the peak lr, then the schedule's shape."""
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return cfg.base_lr * (epoch + 1e-8) / cfg.warmup_epochs
    return cfg.base_lr * SCHEDULES[cfg.schedule].factor(cfg, epoch)
