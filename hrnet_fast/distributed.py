"""Process group from torchrun's environment; a plain single process needs nothing."""
from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from hrnet_fast.device import Device, local_rank
from hrnet_fast.host import default_workers


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 local_rank())


def init(device: Device, world: World, timeout_minutes: float = 30) -> None:
    """Join the process group over the device's backend (hccl / nccl / gloo) when there are peers."""
    if world.distributed and not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": device.torch_device} if device.kind == "cuda" else {}
        dist.init_process_group(device.dist_backend, timeout=timedelta(minutes=timeout_minutes), **kwargs)


def wrap_ddp(model: torch.nn.Module, device: Device) -> torch.nn.Module:
    """DDP without per-step buffer broadcasts (BN statistics stay per rank, as in the reference).

    Gradients as views of DDP's buckets, except on NPU: its fused optimizers move every gradient
    into a combined buffer at their first step, and DDP would then re-point the gradients to its
    buckets each step; copying back into the existing gradients keeps the two in agreement."""
    from torch.nn.parallel import DistributedDataParallel

    params = inspect.signature(DistributedDataParallel.__init__).parameters
    # keyword arguments by name: which one this torch's DDP has decides
    no_buffer_sync: dict[str, Any] = {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {
        "broadcast_buffers": False}
    ids = [device.index] if device.is_accelerator else None
    return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=device.kind != "npu",
                                   **no_buffer_sync)


def broadcast_from_main(tensors: Iterable[torch.Tensor]) -> None:
    """Every rank starts from rank 0's values (parameters, buffers, o2 masters), as DDP's
    constructor ensures; for runs that average gradients themselves (graph capture)."""
    with torch.no_grad():
        for tensor in {id(t): t for t in tensors}.values():
            dist.broadcast(tensor, src=0)


def average_gradients(flat_gradients: list[torch.Tensor]) -> None:
    """Average gradients across ranks: one all-reduce per flat buffer, divided first, as DDP does."""
    world_size = dist.get_world_size()
    for flat in flat_gradients:
        flat.div_(world_size)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def agree_on_least(value: int, device: Device) -> int:
    """The least `value` over all ranks (this rank's own without peers): for settings every rank
    must share that each rank derives from its own machine, such as the default worker count."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device.torch_device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def agreed_workers(given: int | None, device: Device) -> int:
    """`given`, else the default loader worker count, the least over all ranks: each rank's
    default comes from its own CPUs, and their data plans must match."""
    return given if given is not None else agree_on_least(default_workers(), device)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
