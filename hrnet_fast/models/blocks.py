"""Residual blocks and conv-BN units with the reference's attribute names (state-dict keys).

BatchNorm uses PyTorch defaults (momentum 0.1, eps 1e-5), which equal the reference's settings.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, relu: bool = True, bias: bool = False) -> nn.Sequential:
    """Conv (+bias only where the reference has one) -> BN (-> ReLU): keys `.0.*`, `.1.*`."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=bias),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _shortcut(in_ch: int, out_ch: int) -> nn.Sequential | None:
    """1x1 projection when the width changes (HRNet blocks never change resolution)."""
    return conv_bn(in_ch, out_ch, 1, relu=False) if in_ch != out_ch else None


class BasicBlock(nn.Module):
    """Two 3x3 convs plus identity; the block of every HR-module branch."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (4x wider) plus identity; stage 1 and the head's incre modules."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


def make_layer(block: type[BasicBlock] | type[Bottleneck], in_ch: int, planes: int, num_blocks: int) -> nn.Sequential:
    """`num_blocks` blocks in a row; only the first may change the width (keys `.0`, `.1`, ...)."""
    layers = [block(in_ch, planes)]
    layers += [block(planes * block.expansion, planes) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers)
