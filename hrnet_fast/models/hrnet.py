"""HRNet for image classification, module for module the reference (same state-dict keys).

One deliberate difference: fuse layers upsample to the exact size of the target branch, so odd
input sizes work. At sizes divisible by 32 this is the reference's fixed 2^k nearest upsampling,
bit for bit.
"""
from __future__ import annotations

from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from hrnet_fast.models.blocks import BasicBlock, Bottleneck, conv_bn, make_layer
from hrnet_fast.models.config import HRNetConfig


class HRModule(nn.Module):
    """Parallel branches of BasicBlocks, then every branch receives the sum of all branches.

    `fuse_layers[i][j]` maps branch j to branch i: 1x1 conv + nearest upsampling from a lower
    resolution (j > i), a chain of stride-2 3x3 convs from a higher one (j < i), nothing for j == i.
    """

    def __init__(self, channels: tuple[int, ...], blocks_per_branch: int):
        super().__init__()
        self.branches = nn.ModuleList(make_layer(BasicBlock, c, c, blocks_per_branch) for c in channels)
        if len(channels) > 1:
            self.fuse_layers = nn.ModuleList(
                nn.ModuleList(_fuse_path(channels, src, dst) for src in range(len(channels)))
                for dst in range(len(channels))
            )

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if len(xs) == 1:
            return xs
        fused = []
        for dst, row in enumerate(self.fuse_layers):
            paths = cast(nn.ModuleList, row)  # torch's ModuleList is not generic: its items are typed Module
            y = paths[0](xs[0])
            for src in range(1, len(xs)):  # summed in the reference's order: same rounding
                z = paths[src](xs[src])
                if src > dst:
                    z = F.interpolate(z, size=xs[dst].shape[-2:], mode="nearest")
                y = y + z
            fused.append(F.relu(y, inplace=True))  # y is a fresh sum, never an input
        return fused


def _fuse_path(channels: tuple[int, ...], src: int, dst: int) -> nn.Module:
    """The reference's fuse layer from branch `src` to branch `dst` (upsampling is in forward)."""
    if src == dst:
        return nn.Identity()
    if src > dst:
        return conv_bn(channels[src], channels[dst], 1, relu=False)
    steps = dst - src  # each stride-2 conv halves the resolution; only the last changes width
    return nn.Sequential(
        *(conv_bn(channels[src], channels[src], 3, stride=2) for _ in range(steps - 1)),
        conv_bn(channels[src], channels[dst], 3, stride=2, relu=False),
    )


class Transition(nn.ModuleList):
    """Between stages: adapt the widths of the existing branches and add one branch at half the
    resolution of the last, fed from it (every stage adds exactly one branch)."""

    def __init__(self, in_channels: tuple[int, ...], out_channels: tuple[int, ...]):
        layers: list[nn.Module] = [
            nn.Identity() if in_ch == out_ch else conv_bn(in_ch, out_ch, 3)
            for in_ch, out_ch in zip(in_channels, out_channels)
        ]
        # the reference nests the new branch's conv one level deeper: keys `.N.0.0.*`
        layers.append(nn.Sequential(conv_bn(in_channels[-1], out_channels[-1], 3, stride=2)))
        super().__init__(layers)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(x) for layer, x in zip(self, xs + xs[-1:])]


class Stage(nn.Sequential):
    """HR modules in a row, passing the list of branch tensors along."""

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        for module in self:
            xs = module(xs)
        return xs


class HRNet(nn.Module):
    """HRNet-C: stem, four multi-resolution stages, the incre/downsamp head, a linear classifier.

    `arch`, `config` and `num_classes` stay on the model so checkpoints can record them.
    """

    # made in __init__ by name, one per stage
    transition1: Transition
    transition2: Transition
    transition3: Transition
    stage2: Stage
    stage3: Stage
    stage4: Stage
    # set by align.align_model on padded models only (is_aligned tests for them)
    official_config: HRNetConfig
    align: int

    def __init__(self, config: HRNetConfig, num_classes: int = 1000):
        super().__init__()
        self.arch = config.name
        self.config = config
        self.num_classes = num_classes
        stem = config.stem_channels
        self.conv1 = nn.Conv2d(3, stem, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = nn.Conv2d(stem, stem, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, stem, config.layer1_planes, config.layer1_blocks)

        widths: tuple[int, ...] = (config.layer1_planes * Bottleneck.expansion,)
        for index, num_modules in enumerate(config.stage_modules, start=2):
            branch_widths = config.branch_channels[:index]
            setattr(self, f"transition{index - 1}", Transition(widths, branch_widths))
            setattr(self, f"stage{index}", Stage(
                *(HRModule(branch_widths, config.blocks_per_branch) for _ in range(num_modules))
            ))
            widths = branch_widths

        head_widths = [planes * Bottleneck.expansion for planes in config.head_planes]
        self.incre_modules = nn.ModuleList(
            make_layer(Bottleneck, width, planes, 1) for width, planes in zip(widths, config.head_planes)
        )
        self.downsamp_modules = nn.ModuleList(
            conv_bn(head_widths[i], head_widths[i + 1], 3, stride=2, bias=True) for i in range(len(head_widths) - 1)
        )
        self.final_layer = conv_bn(head_widths[-1], config.num_features, 1, bias=True)
        self.classifier = nn.Linear(config.num_features, num_classes)
        if not self.classifier.weight.is_meta:  # meta tensors hold no values; init there is pure cost
            self._init_weights()

    def _init_weights(self) -> None:
        """The reference's init: He (fan_out) for convs, BN as identity; conv biases and the
        classifier keep PyTorch's defaults, as in the reference."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled `num_features`-wide map at 1/32 of the input (timm's meaning): for
        feature extraction, dense heads and CAMs, which need the spatial layout pooling discards."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        xs = self.stage2(self.transition1(xs))
        xs = self.stage3(self.transition2(xs))
        xs = self.stage4(self.transition3(xs))
        y = self.incre_modules[0](xs[0])
        for incre, down, x in zip(self.incre_modules[1:], self.downsamp_modules, xs[1:]):
            y = incre(x) + down(y)
        return self.final_layer(y)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool and classify `forward_features`' map; with `pre_logits`, the pooled
        [N, num_features] vector (embeddings, linear probes) instead of the logits."""
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
