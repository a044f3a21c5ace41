"""The one place batches cross to the device: uint8 NHWC in, normalized channels_last out
(NCHW on NPU, whose kernels want it).

Why here and not in the workers: uint8 is a quarter of the bytes of float32 over PCIe and through
shared memory, and the float conversion and normalization are free on the accelerator. On a
device with streams the next batch's copy runs on a side stream while the current batch computes.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any

import torch

from hrnet_fast.device import Device

IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class Normalize:
    """uint8 images [B, H, W, 3] → `(images - mean) / std` as x [B, 3, H, W] in `dtype` on `device`,
    in the device's memory format: channels_last (the NHWC → NCHW permute is that memory format, so
    no copy), or NCHW on NPU. The one place model inputs are made, for batches and single images."""

    def __init__(self, device: Device, dtype: torch.dtype = torch.float32,
                 mean: Sequence[float] = IMAGENET_MEAN_255, std: Sequence[float] = IMAGENET_STD_255) -> None:
        self.device, self.dtype = device, dtype
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device.torch_device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device.torch_device).view(1, -1, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device.torch_device, non_blocking=True).permute(0, 3, 1, 2)
        x = x.to(torch.float32).sub_(self.mean).div_(self.std).to(self.dtype)
        return x.contiguous(memory_format=self.device.memory_format)


class DevicePrefetcher:
    """Iterate `loader`'s (images uint8 [B, H, W, 3], *rest) as (x [B, 3, H, W], *rest) on `device`.

    `x` is what `Normalize` makes of the images. Tensors in `rest` are moved to the device,
    anything else (keys) passes through. Without an accelerator the same code runs on the CPU,
    without streams.
    """

    def __init__(self, loader: Iterable, device: Device, dtype: torch.dtype = torch.float32,
                 mean: Sequence[float] = IMAGENET_MEAN_255, std: Sequence[float] = IMAGENET_STD_255) -> None:
        self.loader, self.device = loader, device
        self.normalize = Normalize(device, dtype, mean, std)

    def __len__(self) -> int:
        """The loader's length, for loaders that have one (DataLoaders, lists; not generators)."""
        if not isinstance(self.loader, Sized):
            raise TypeError(f"object of type {type(self.loader).__name__!r} has no len()")
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple]:
        stream = self.device.new_stream()
        batches = iter(self.loader)
        pending = self._start(next(batches, None), stream)
        while pending is not None:
            self.device.wait_stream(stream)
            for item in pending:
                if isinstance(item, torch.Tensor):
                    self.device.record_stream(item)
            ready, pending = pending, self._start(next(batches, None), stream)
            yield ready

    def _start(self, batch: Sequence[Any] | None, stream: Any | None) -> tuple | None:
        """Queue the copy and normalization of `batch` on `stream` (None: the current stream)."""
        if batch is None:
            return None
        images, *rest = batch
        target = self.device.torch_device
        with self.device.stream_context(stream):
            x = self.normalize(images)
            moved = [r.to(target, non_blocking=True) if isinstance(r, torch.Tensor) else r for r in rest]
        return (x, *moved)
