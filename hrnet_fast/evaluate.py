"""Top-1 / top-5 accuracy over the exact val stream: every image counted once across all ranks."""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from hrnet_fast import distributed
from hrnet_fast.device import Device


@dataclass
class EvalResult:
    correct1: int
    correct5: int
    images: int
    seconds: float
    # (key, label, top-5 class indices) per image; only when asked for, gathered on rank 0
    predictions: list[tuple[str, int, list[int]]] = field(default_factory=list)

    @property
    def acc1(self) -> float:
        return 100.0 * self.correct1 / max(self.images, 1)

    @property
    def acc5(self) -> float:
        return 100.0 * self.correct5 / max(self.images, 1)

    @property
    def images_per_s(self) -> float:
        return self.images / max(self.seconds, 1e-9)

    def line(self) -> str:
        return f"Acc@1 {self.acc1:.2f} Acc@5 {self.acc5:.2f} images {self.images}"


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable, device: Device, autocast,
             collect_predictions: bool = False) -> EvalResult:
    """Run `batches` of (x, labels, mask, keys) from the device prefetcher; padding is masked out.

    Counts stay on the device and are summed over ranks once at the end.
    """
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    counts = torch.zeros(3, dtype=torch.int64, device=device.torch_device)
    local_predictions: list[tuple[str, int, list[int]]] = []
    for x, labels, mask, keys in batches:
        with autocast():
            logits = model(x)
        k = min(5, logits.shape[1])
        top = logits.float().topk(k, dim=1).indices
        hits = top.eq(labels.unsqueeze(1)) & mask.unsqueeze(1)
        counts[0] += hits[:, :1].sum()
        counts[1] += hits.sum()
        counts[2] += mask.sum()
        if collect_predictions:
            valid = mask.cpu().tolist()
            for key, label, row, ok in zip(keys, labels.cpu().tolist(), top.cpu().tolist(), valid):
                if ok:
                    local_predictions.append((key, label, row))
    distributed.all_reduce_sum(counts)
    device.synchronize()
    seconds = time.perf_counter() - start
    predictions = local_predictions
    if collect_predictions and dist.is_initialized():
        gathered: list[list | None] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local_predictions)
        predictions = sorted(p for part in gathered for p in (part or []))
    model.train(was_training)
    c1, c5, n = counts.tolist()
    return EvalResult(c1, c5, n, seconds, predictions)
