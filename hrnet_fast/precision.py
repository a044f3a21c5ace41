"""Precision modes: fp32, amp (fp16 autocast), bf16 (bf16 autocast) and o2 (apex O2, natively).

O2 as apex defines it: the model's weights and activations are fp16 except BatchNorm, which stays
fp32; the optimizer updates fp32 master copies of the weights, which are copied back into the fp16
model after each step; the loss is scaled (dynamically, or statically with `loss_scale`).

Every mode goes through one `torch.amp.GradScaler` so a non-finite loss or gradient skips the step
in every mode (fp32 and bf16 use a constant scale of 1, which is exact). Skipped steps are counted
on the device and read only when the caller asks, so a step never waits for the host.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from hrnet_fast.device import Device
from hrnet_fast.errors import UserError

PRECISIONS = {"fp32": "float32", "amp": "fp16 autocast", "bf16": "bf16 autocast",
              "o2": "apex O2: fp16 model, fp32 BatchNorm and master weights"}  # name: what it is (--help)
_AUTOCAST = {"fp32": None, "amp": torch.float16, "bf16": torch.bfloat16, "o2": None}


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


class MixedPrecision:
    """Owns the model's dtypes, the fp32 master weights (o2), the loss scaler and the skip count."""

    def __init__(self, name: str, device: Device, loss_scale: float | None = None) -> None:
        if name not in PRECISIONS:
            raise UserError(f"unknown precision {name!r}: choose one of {', '.join(PRECISIONS)}")
        if name == "bf16" and not device.supports_bf16():
            raise UserError(f"--precision bf16 is not supported on {device.describe()}: use amp or o2")
        self.name = name
        self.device = device
        self.autocast_dtype = _AUTOCAST[name]
        self.input_dtype = torch.float16 if name == "o2" else torch.float32
        scaled = name in ("amp", "o2")
        self.dynamic = scaled and loss_scale is None
        self.static_scale = float(loss_scale) if loss_scale is not None else (None if scaled else 1.0)
        self.scaler = device.grad_scaler(init_scale=self.static_scale or 2.0 ** 16)
        self.masters: list[torch.Tensor] = []
        self.to_optimizer: Callable[[nn.Parameter], torch.Tensor] = lambda p: p
        self._model_params: list[torch.Tensor] = []
        self.skipped = torch.zeros((), dtype=torch.int64, device=device.torch_device)
        self.consecutive = torch.zeros((), dtype=torch.int64, device=device.torch_device)
        self.max_consecutive = torch.zeros((), dtype=torch.int64, device=device.torch_device)

    # ---- model and optimizer -------------------------------------------------------------------
    def cast_model(self, model: nn.Module) -> nn.Module:
        """o2: fp16 model with fp32 BatchNorm. Other modes keep fp32 weights."""
        if self.name == "o2":
            model.half()
            for module in model.modules():
                if is_norm(module):
                    module.float()
        return model

    def optimizer_params(self, model: nn.Module) -> Callable[[nn.Parameter], torch.Tensor]:
        """Map a model parameter to the tensor the optimizer updates (its fp32 master under o2)."""
        self._model_params = [p for p in model.parameters() if p.requires_grad]
        if self.name != "o2":
            self.masters = self._model_params
            self.to_optimizer = lambda p: p
            return self.to_optimizer
        self.masters = [p.detach().float().clone().requires_grad_(True) if p.dtype != torch.float32 else p
                        for p in self._model_params]
        index = {id(p): m for p, m in zip(self._model_params, self.masters)}
        self.to_optimizer = lambda p: index[id(p)]
        return self.to_optimizer

    def sync_masters_from_model(self, state: dict[str, torch.Tensor], model: nn.Module) -> None:
        """Reload o2 masters from an fp32 state dict (resume) so no precision is lost to fp16."""
        if self.name != "o2":
            return
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        with torch.no_grad():
            for name, master in zip(names, self.masters):
                master.copy_(state[name])

    def master_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with fp32 weights (the masters under o2): what checkpoints keep."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if self.name == "o2":
            names = [n for n, p in model.named_parameters() if p.requires_grad]
            for name, master in zip(names, self.masters):
                state[name] = master.detach().clone()
            state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
        return state

    # ---- one step ----------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        return self.device.autocast(self.autocast_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Scaled backward; under o2 the fp16 gradients move to the fp32 masters, into their
        existing gradient tensors once there are some (fused optimizers hold on to those)."""
        self.scaler.scale(loss).backward()
        if self.name == "o2":
            pairs = [(m, p, p.grad) for m, p in zip(self.masters, self._model_params) if m is not p and p.grad is not None]
            into = [(m.grad, grad) for m, _, grad in pairs if m.grad is not None]
            if into:  # one fused launch, not one copy per parameter (about a thousand in W18)
                torch._foreach_copy_([m for m, _ in into], [g for _, g in into])
            for master, param, grad in pairs:
                if master.grad is None:
                    master.grad = grad.float()
                param.grad = None

    def allocate_gradients(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Zero gradients for every model parameter and master, to be written in place from now
        on (a captured graph writes to fixed addresses). The optimizer's gradients are views into
        one flat buffer per dtype, with their parameter's strides, so averaging them across
        processes is one all-reduce. Returns the model's gradients and those flat buffers."""
        optimized = list({id(t): t for t in self.masters}.values())
        flats = []
        views: dict[int, torch.Tensor] = {}  # id(tensor): its gradient, a view into its dtype's flat buffer
        for dtype in dict.fromkeys(t.dtype for t in optimized):
            tensors = [t for t in optimized if t.dtype == dtype]
            flat = torch.zeros(sum(t.numel() for t in tensors), dtype=dtype, device=tensors[0].device)
            offset = 0
            for tensor in tensors:
                tensor.grad = views[id(tensor)] = flat.as_strided(tensor.shape, tensor.stride(), offset)
                offset += tensor.numel()
            flats.append(flat)
        model_gradients = []
        for param, master in zip(self._model_params, self.masters):
            if master is param:
                model_gradients.append(views[id(param)])
            else:  # o2's fp16 weights: gradients of their own, copied to the masters
                param.grad = grad = torch.zeros_like(param)
                model_gradients.append(grad)
        return model_gradients, flats

    def backward_in_place(self, loss: torch.Tensor, model_gradients: list[torch.Tensor]) -> None:
        """`backward` into the gradients `allocate_gradients` made, with no tensor (re)assigned:
        the same work whether run eagerly or replayed from a graph."""
        torch._foreach_zero_(model_gradients)
        self.scaler.scale(loss).backward()
        if self.name == "o2":
            pairs = [(_allocated_grad(m), _allocated_grad(p)) for m, p in zip(self.masters, self._model_params)
                     if m is not p]
            if pairs:
                torch._foreach_copy_([m for m, _ in pairs], [p for _, p in pairs])

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale + finite check, step (skipped on inf/NaN), count skips, update the scale; no
        host sync with fused optimizers (GradScaler hands them the scale and the inf flag)."""
        self.scaler.step(optimizer)
        # 0 or 1: torch_npu's scaler can flag one overflow twice (per device and from the NPU flag)
        found = (sum(v for v in self.scaler._found_inf_per_device(optimizer).values()) > 0).to(torch.int64)
        self.skipped += found
        self.consecutive.mul_(found).add_(found)
        torch.maximum(self.max_consecutive, self.consecutive, out=self.max_consecutive)
        self.scaler.update(None if self.dynamic else self.static_scale)
        if self.name == "o2":
            with torch.no_grad():
                fp16 = [p for p, m in zip(self._model_params, self.masters) if m is not p]
                src = [m for p, m in zip(self._model_params, self.masters) if m is not p]
                if fp16:
                    torch._foreach_copy_(fp16, src)

    # ---- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scaler": self.scaler.state_dict(), "skipped": int(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scaler.load_state_dict(state["scaler"])
        self.skipped.fill_(int(state.get("skipped", 0)))


def _allocated_grad(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor.grad`, which `allocate_gradients` made and nothing sets back to None."""
    grad = tensor.grad
    if grad is None:
        raise RuntimeError("a gradient is missing: run allocate_gradients() before backward_in_place()")
    return grad


def param_groups(model: nn.Module, to_optimizer: Callable[[nn.Parameter], torch.Tensor],
                 weight_decay: float, no_wd_norm_bias: bool) -> list[dict[str, Any]]:
    """SGD parameter groups; with `no_wd_norm_bias`, BatchNorm weights and all biases get no decay."""
    if not no_wd_norm_bias:
        return [{"params": [to_optimizer(p) for p in model.parameters() if p.requires_grad],
                 "weight_decay": weight_decay}]
    decay: list[torch.Tensor] = []
    no_decay: list[torch.Tensor] = []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if is_norm(module) or name == "bias" else decay).append(to_optimizer(p))
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def all_params(groups: Iterable[dict[str, Any]]) -> list[torch.Tensor]:
    return [p for g in groups for p in g["params"]]
