"""Learning rate as a pure function of (config, fractional epoch): nothing to save or restore."""
from __future__ import annotations

import math

from hrnet_fast.config import TrainConfig


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """Linear warm-up, then step decay at the milestones or cosine decay to zero."""
    if cfg.warmup_epochs > 0 and epoch < cfg.warmup_epochs:
        return cfg.base_lr * (epoch + 1e-8) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
        progress = min((epoch - cfg.warmup_epochs) / span, 1.0)
        return cfg.base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    decays = sum(1 for m in cfg.milestones if epoch >= m)
    return cfg.base_lr * cfg.gamma ** decays
