"""Build a zoo model by name, optionally with weights: the one entry point the trainer uses."""
from __future__ import annotations

from pathlib import Path

from hrnet_fast.errors import UserError
from hrnet_fast.models.align import align_model
from hrnet_fast.models.config import get_config
from hrnet_fast.models.hrnet import HRNet
from hrnet_fast.models.weights import load_weights


def create_model(name: str, num_classes: int = 1000, pretrained: str | Path | None = None,
                 align: int | None = None) -> HRNet:
    """HRNet `name` with a `num_classes`-way classifier; `pretrained` is a checkpoint path whose
    weights must fit exactly (official .pth, timm weights or our own checkpoints).

    `align` pads channel widths to that multiple (8 for GPU tensor cores, 16 for Ascend) without
    changing the function: the model is initialised unaligned, from the same random draws, then
    padded, and it takes the same official-shaped weights (see `hrnet_fast.models.align`).
    """
    if num_classes < 1:
        raise UserError(f"--num-classes must be at least 1, got {num_classes}")
    model = HRNet(get_config(name), num_classes)
    if align is not None:
        model = align_model(model, align)
    if pretrained is not None:
        load_weights(model, pretrained)
    return model
