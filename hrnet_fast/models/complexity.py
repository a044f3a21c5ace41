"""Model size and compute, measured on the meta device: no weights allocated, no real math."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from hrnet_fast.models.align import aligned_config
from hrnet_fast.models.config import get_config
from hrnet_fast.models.hrnet import HRNet


def count_params(model: nn.Module) -> int:
    """Learnable parameters (BN running statistics excluded), the paper's #Params."""
    return sum(p.numel() for p in model.parameters())


def measure(name: str, image_size: int = 224, align: int | None = None) -> tuple[int, int]:
    """(parameters, multiply-adds) of `name` (1000 classes) for one image_size x image_size image;
    with `align`, of the channel-aligned model as it runs (zero padding counted as work)."""
    config = get_config(name) if align is None else aligned_config(get_config(name), align)
    with torch.device("meta"):
        model = HRNet(config, 1000).eval()
        image = torch.empty(1, 3, image_size, image_size)
    params = count_params(model)
    _drop_batchnorm(model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image)
    return params, counter.get_total_flops() // 2  # the counter reports 2 FLOPs per multiply-add


def _drop_batchnorm(model: nn.Module) -> None:
    """Replace BN by Identity: FlopCounterMode counts no BN FLOPs anyway (like the paper), and
    BN's meta kernel would be 90% of this forward's time."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(parent, name, nn.Identity())
