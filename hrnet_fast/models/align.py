"""Channel-aligned HRNet: the official function, with channel widths zero-padded to a multiple.

Why: tensor cores want channel counts in multiples of 8 (GPUs) or 16 (Ascend C0 blocks), and
W18's branches (18, 36, 72, 144) miss them; padded to (24, 40, 72, 144) W18 trains markedly faster
on tensor cores (docs/performance.md has the design's figure).

Why the math is identical: a padded channel has zero conv weights in and out, zero bias and zero
BatchNorm scale and shift, so its activation is exactly 0 in every layer, train or eval mode
(eval divides 0 by sqrt(running_var + eps), which padding starts at 1). Every gradient reaching a
padded weight is a product with one of those zeros, so SGD with momentum, weight decay and loss
scaling never moves it off 0, and the official slice only ever receives added zeros. Values are
the official ones up to summation order: a kernel may block a 24-channel sum differently from an
18-channel one (fp32 oneDNN does), which moves results by rounding, never the padding off 0.

The contract: padding lives only in memory. Whatever is saved or exported is stripped back to the
official shapes (`strip_state_dict`, `strip_optimizer_state`); whatever is loaded is padded on
the way in (`pad_state_dict`, which `load_weights` applies; `pad_optimizer_state`). Official,
timm and hrnet-fast checkpoints therefore load into aligned and unaligned models alike.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from hrnet_fast.errors import UserError
from hrnet_fast.models.config import HRNetConfig
from hrnet_fast.models.hrnet import HRNet

Shape = tuple[int, ...]


def aligned_config(config: HRNetConfig, multiple: int) -> HRNetConfig:
    """`config` with every channel width rounded up to `multiple`.

    Only branch widths move in the zoo at 8 and 16 (stem 64, stage-1 and head Bottlenecks, 2048
    features are multiples of 16 already), but rounding every width keeps any config exact. Two
    widths are not channels of ours and stay: the 3 input colours and the class count.
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise UserError(f"channel alignment must be a positive whole number (8 or 16), got {multiple!r}")
    up = functools.partial(_round_up, multiple=multiple)
    return dataclasses.replace(
        config,
        layer1_planes=up(config.layer1_planes),
        branch_channels=_round_up_four(config.branch_channels, multiple),
        stem_channels=up(config.stem_channels),
        head_planes=_round_up_four(config.head_planes, multiple),
        num_features=up(config.num_features),
    )


def _round_up(width: int, multiple: int) -> int:
    return -(-width // multiple) * multiple


def _round_up_four(widths: tuple[int, int, int, int], multiple: int) -> tuple[int, int, int, int]:
    """Each of the four branches' widths rounded up (a tuple of four, as HRNetConfig holds them)."""
    first, second, third, fourth = widths
    return (_round_up(first, multiple), _round_up(second, multiple), _round_up(third, multiple),
            _round_up(fourth, multiple))


def align_model(model: HRNet, multiple: int) -> HRNet:
    """A channel-padded HRNet equal to `model` (same weights, same outputs), on its device and
    in its dtypes.

    The padded model is built on the meta device, so aligning draws no random numbers: a seeded
    `create_model(..., align=8)` starts from exactly the weights of the unaligned one. It keeps
    `official_config` and `align` so everything saved from it can be stripped to official shapes.
    """
    if is_aligned(model):
        raise UserError(f"{model.arch} is already aligned to {model.align} channels: align the original model")
    with torch.device("meta"):
        padded = HRNet(aligned_config(model.config, multiple), model.num_classes)
    if padded.state_dict().keys() != model.state_dict().keys():  # a width now equals its neighbour's
        raise UserError(f"aligning {model.arch} to {multiple} channels changes its layers: use 8 or 16")
    padded.official_config = model.config
    padded.align = multiple
    state = {key: value.clone() for key, value in model.state_dict().items()}  # no storage shared with `model`
    padded.load_state_dict(pad_state_dict(state, padded), assign=True)  # takes their device and dtype
    return padded.train(model.training)


def is_aligned(model: nn.Module) -> bool:
    """Whether `model` was padded by `align_model`, i.e. its shapes differ from what it saves."""
    return hasattr(model, "official_config")


def official_shapes(model: nn.Module) -> dict[str, Shape]:
    """Every state-dict entry's shape in the official architecture (the model's own shapes when it
    is not aligned): what checkpoints hold and what loaded weights must fit."""
    if is_aligned(model):
        return dict(meta_shapes(model.official_config, model.num_classes))
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@functools.cache
def meta_shapes(config: HRNetConfig, num_classes: int = 1000) -> dict[str, Shape]:
    """State-dict shapes of HRNet(config, num_classes), cached (do not modify the result)."""
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return {key: tuple(value.shape) for key, value in HRNet(config, num_classes).state_dict().items()}


# ---- tensors ------------------------------------------------------------------------------------
def pad_to(tensor: torch.Tensor, shape: Sequence[int], fill: float = 0.0) -> torch.Tensor:
    """`tensor` in the leading corner of a `shape` tensor filled with `fill` (itself if it fits)."""
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    _check_fits(tensor.shape, shape, "pad")
    padded = tensor.new_full(tuple(shape), fill)
    padded[_corner(tensor.shape)] = tensor
    return padded


def pad_like(tensor: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`tensor` in the leading corner of zeros shaped and laid out like `like` (itself if it is).

    For optimizer state: fused CUDA SGD requires each momentum buffer to have its parameter's
    strides, and a loaded buffer is contiguous while a channels_last parameter is not."""
    if tensor.shape == like.shape and tensor.stride() == like.stride():
        return tensor
    _check_fits(tensor.shape, like.shape, "pad")
    padded = torch.zeros_like(like, dtype=tensor.dtype, device=tensor.device)
    padded[_corner(tensor.shape)] = tensor
    return padded


def strip_to(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The leading `shape` corner of `tensor`, as a compact copy (a view would make torch.save
    write the whole padded storage)."""
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    _check_fits(shape, tensor.shape, "strip")
    return tensor[_corner(shape)].clone()


def _check_fits(small: Sequence[int], large: Sequence[int], action: str) -> None:
    if len(small) != len(large) or any(s > g for s, g in zip(small, large)):
        raise ValueError(f"cannot {action} between shapes {tuple(small)} and {tuple(large)}")


def _corner(shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(0, size) for size in shape)


# ---- model state ----------------------------------------------------------------------------------
def pad_state_dict(state: Mapping[str, torch.Tensor], padded_model: nn.Module) -> dict[str, torch.Tensor]:
    """Official-shaped `state` padded to `padded_model`'s shapes: zeros, except BN `running_var`
    ones so eval-mode BN of a zero channel stays 0 and finite. Keys the model lacks pass through
    untouched (the loader reports them); for an unaligned model this returns `state` as is."""
    target = padded_model.state_dict()
    return {
        key: pad_to(value, target[key].shape, 1.0 if key.endswith("running_var") else 0.0) if key in target else value
        for key, value in state.items()
    }


def strip_state_dict(state: Mapping[str, torch.Tensor], shapes: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """`state` cut back to official `shapes` (from `official_shapes(model)`): what to save or export."""
    return {key: strip_to(value, shapes[key]) if key in shapes else value for key, value in state.items()}


def padding_is_zero(model: nn.Module, state: Mapping[str, torch.Tensor] | None = None) -> bool:
    """Whether every padded entry of every parameter is exactly 0 (the invariant that keeps the
    math official). `state` checks other values of the same parameters, e.g. the fp32 masters in
    `MixedPrecision.master_state_dict(model)`, instead of the model's own."""
    official = official_shapes(model)
    values = state if state is not None else dict(model.named_parameters())
    return all(
        not values[name].narrow(dim, size, values[name].shape[dim] - size).any()
        for name, _ in model.named_parameters()
        for dim, size in enumerate(official[name])
        if values[name].shape[dim] > size
    )


# ---- optimizer state ----------------------------------------------------------------------------
def optimizer_official_shapes(optimizer: torch.optim.Optimizer, model: nn.Module,
                              to_optimizer: Callable[[nn.Parameter], torch.Tensor] = lambda p: p) -> list[Shape]:
    """The official shape of every tensor `optimizer` updates, in its state-dict order.

    `to_optimizer` maps a model parameter to the tensor the optimizer holds for it: the function
    `MixedPrecision.optimizer_params` returned (fp32 masters under o2). Needed because shapes alone
    cannot tell which official width a padded width came from (W30 at 16: 60 and 64 both give 64).
    """
    official = official_shapes(model)
    by_tensor = {id(to_optimizer(p)): official[name] for name, p in model.named_parameters() if p.requires_grad}
    return [by_tensor[id(p)] for group in optimizer.param_groups for p in group["params"]]


def strip_optimizer_state(state: dict[str, Any], shapes: Sequence[Sequence[int]]) -> dict[str, Any]:
    """`optimizer.state_dict()` with per-parameter buffers (SGD momentum) cut to official `shapes`
    (from `optimizer_official_shapes`); scalars such as step counts are kept."""
    return _map_optimizer_state(state, shapes, strip_to)


def pad_optimizer_state(state: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """An official-shaped optimizer state dict padded with zeros to `optimizer`'s tensors and laid
    out like them, ready for `optimizer.load_state_dict` (zero momentum keeps padded weights at 0)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return _map_optimizer_state(state, params, pad_like)


def _map_optimizer_state(state: dict[str, Any], targets: Sequence[Any],
                         resize: Callable[[torch.Tensor, Any], torch.Tensor]) -> dict[str, Any]:
    """Apply `resize(tensor, target)` to every non-scalar tensor of every parameter's state;
    `targets` (shapes or tensors) follow the order of the state dict's own `param_groups` indices."""
    indices = [index for group in state["param_groups"] for index in group["params"]]
    target_of = dict(zip(indices, targets, strict=True))
    per_param = {
        index: {k: resize(v, target_of[index]) if isinstance(v, torch.Tensor) and v.dim() > 0 else v
                for k, v in entries.items()}
        for index, entries in state["state"].items()
    }
    return {**state, "state": per_param}
