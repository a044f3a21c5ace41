"""Build a zoo model by name, optionally with weights: the one entry point the trainer uses."""
from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from hrnet_fast.errors import UserError
from hrnet_fast.models.config import get_config
from hrnet_fast.models.hrnet import HRNet
from hrnet_fast.models.weights import load_weights


def create_model(name: str, num_classes: int = 1000, pretrained: str | Path | None = None) -> nn.Module:
    """HRNet `name` with a `num_classes`-way classifier; `pretrained` is a checkpoint path whose
    weights must fit exactly (official .pth, timm weights or our own checkpoints)."""
    if num_classes < 1:
        raise UserError(f"--num-classes must be at least 1, got {num_classes}")
    model = HRNet(get_config(name), num_classes)
    if pretrained is not None:
        load_weights(model, pretrained)
    return model
