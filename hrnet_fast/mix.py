"""Mixup and CutMix (`--mixup A`, `--cutmix A`) on the device, with timm's semantics.

What: timm's `Mixup(mode='batch', correct_lam=True, label_smoothing=…)`: with probability
`prob` a batch is mixed with itself flipped (sample i with sample B-1-i), by Mixup (a blend with
weight lam ~ Beta(A, A)) or CutMix (a box of area about 1-lam pasted from the flipped batch, lam
then corrected to the area actually kept), chosen with `switch_prob` when both are on; the
targets are the label-smoothed one-hot vectors mixed with the same lam.

Why this shape: timm draws from the global np.random inside the step. Here each step's draws come
from a generator keyed by (seed, rank, epoch, step), so a resumed run draws what the straight run
drew, and they are made on the host as plain numbers, so applying them on the device is a few
in-place kernels with no host sync and the same shapes every step. While mixing is on, the targets
are always soft ([B, C] float, also for a batch the probability leaves unmixed), so a captured
step (--graph) sees one input signature; with mixing off the integer labels go through unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MixDraw:
    """One batch's draw: `lam`, the weight of each sample's own image and label (1: unmixed), and
    for CutMix the `box` (y0, y1, x0, x1) pasted from the flipped batch (None: a blend)."""

    lam: float
    box: tuple[int, int, int, int] | None = None


@dataclass(frozen=True)
class BatchMix:
    """timm's batch-mode Mixup / CutMix for one rank; `__call__` mixes a batch on its device."""

    mixup_alpha: float
    cutmix_alpha: float
    prob: float
    switch_prob: float
    label_smoothing: float
    num_classes: int
    seed: int
    rank: int = 0

    def __call__(self, x: torch.Tensor, labels: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`x` mixed in place and the soft targets, for step `step` (0-based) of `epoch`."""
        rng = np.random.default_rng([self.seed, self.rank, epoch, step])
        return self.apply(x, labels, self.draw(rng, x.shape[-2], x.shape[-1]))

    def draw(self, rng: np.random.Generator, height: int, width: int) -> MixDraw:
        """timm's `Mixup._params_per_batch` and `cutmix_bbox_and_lam`, draw for draw (np.random's
        rand / beta / randint as `rng`'s random / beta / integers, in the same order)."""
        lam, use_cutmix = 1.0, False
        if rng.random() < self.prob:
            if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
                use_cutmix = bool(rng.random() < self.switch_prob)
            else:
                use_cutmix = self.cutmix_alpha > 0
            alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
            lam = float(rng.beta(alpha, alpha))
        if lam == 1.0 or not use_cutmix:
            return MixDraw(lam)
        ratio = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * ratio), int(width * ratio)
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        y0, y1 = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, height)
        x0, x1 = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, width)
        return MixDraw(1.0 - (y1 - y0) * (x1 - x0) / float(height * width), (y0, y1, x0, x1))

    def apply(self, x: torch.Tensor, labels: torch.Tensor, draw: MixDraw) -> tuple[torch.Tensor, torch.Tensor]:
        """`draw` applied to `x` (in place, as timm does) and to `labels`: (x, soft targets)."""
        if draw.box is not None:
            y0, y1, x0, x1 = draw.box
            x[:, :, y0:y1, x0:x1] = x.flip(0)[:, :, y0:y1, x0:x1]
        elif draw.lam != 1.0:
            flipped = x.flip(0).mul_(1.0 - draw.lam)
            x.mul_(draw.lam).add_(flipped)
        return x, self.targets(labels, draw.lam)

    def targets(self, labels: torch.Tensor, lam: float) -> torch.Tensor:
        """timm's `mixup_target`: smoothed one-hot [B, C] float, mixed with its flip by `lam`."""
        off = self.label_smoothing / self.num_classes
        one_hot = torch.full((labels.shape[0], self.num_classes), off, device=labels.device)
        one_hot.scatter_(1, labels.long().view(-1, 1), 1.0 - self.label_smoothing + off)
        return one_hot * lam + one_hot.flip(0) * (1.0 - lam)
