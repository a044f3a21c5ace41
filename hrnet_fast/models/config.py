"""The HRNet classification zoo as one table: every width and depth comes from here.

Facts from HRNet-Image-Classification (commit f760c98, experiments/*.yaml). Stage 1 is a stack
of Bottlenecks on one branch; stages 2-4 add one branch each (half the resolution, twice the
width) and repeat HR modules of BasicBlocks; the head (incre / downsamp / final_layer) is the
same for all nine.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hrnet_fast.errors import UserError


@dataclass(frozen=True)
class HRNetConfig:
    """One architecture. `branch_channels` is the single source of branch widths, so a later
    channel-alignment pass only has to replace this tuple."""

    name: str
    layer1_blocks: int  # Bottlenecks in stage 1
    layer1_planes: int  # their bottleneck width (output is 4x)
    stage_modules: tuple[int, int, int]  # HR modules in stages 2, 3, 4
    blocks_per_branch: int  # BasicBlocks per branch in every HR module
    branch_channels: tuple[int, int, int, int]  # widths of the 1/4 .. 1/32 resolution branches
    stem_channels: int = 64
    head_planes: tuple[int, int, int, int] = (32, 64, 128, 256)  # incre Bottlenecks (output 4x)
    num_features: int = 2048  # width of final_layer, the classifier's input

    def to_dict(self) -> dict:
        """Plain JSON-able form, stored in checkpoints next to the model name."""
        return dataclasses.asdict(self)


# name: (layer1 blocks, layer1 planes, HR modules in stages 2-4, blocks per branch, width of branch 1)
_TABLE: dict[str, tuple[int, int, tuple[int, int, int], int, int]] = {
    "hrnet_w18_small_v1": (1, 32, (1, 1, 1), 2, 16),
    "hrnet_w18_small_v2": (2, 64, (1, 3, 2), 2, 18),
    "hrnet_w18": (4, 64, (1, 4, 3), 4, 18),
    "hrnet_w30": (4, 64, (1, 4, 3), 4, 30),
    "hrnet_w32": (4, 64, (1, 4, 3), 4, 32),
    "hrnet_w40": (4, 64, (1, 4, 3), 4, 40),
    "hrnet_w44": (4, 64, (1, 4, 3), 4, 44),
    "hrnet_w48": (4, 64, (1, 4, 3), 4, 48),
    "hrnet_w64": (4, 64, (1, 4, 3), 4, 64),
}

CONFIGS: dict[str, HRNetConfig] = {
    name: HRNetConfig(name, blocks, planes, modules, per_branch, tuple(width * 2**i for i in range(4)))
    for name, (blocks, planes, modules, per_branch, width) in _TABLE.items()
}

MODEL_NAMES: tuple[str, ...] = tuple(CONFIGS)


def get_config(name: str) -> HRNetConfig:
    """The config of a zoo model; an unknown name is a user mistake, so list the valid ones."""
    if name not in CONFIGS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    return CONFIGS[name]
