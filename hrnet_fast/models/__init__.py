"""The HRNet classification zoo: build by name, load weights, measure size and compute."""
from hrnet_fast.models.align import (
    align_model,
    aligned_config,
    is_aligned,
    official_shapes,
    optimizer_official_shapes,
    pad_optimizer_state,
    pad_state_dict,
    pad_to,
    padding_is_zero,
    strip_optimizer_state,
    strip_state_dict,
    strip_to,
)
from hrnet_fast.models.complexity import count_params, measure
from hrnet_fast.models.config import CONFIGS, MODEL_NAMES, HRNetConfig, get_config
from hrnet_fast.models.factory import create_model
from hrnet_fast.models.hrnet import HRNet
from hrnet_fast.models.weights import guess_model_name, load_weights, read_state_dict, strip_prefixes

__all__ = [
    "CONFIGS",
    "MODEL_NAMES",
    "HRNet",
    "HRNetConfig",
    "align_model",
    "aligned_config",
    "count_params",
    "create_model",
    "get_config",
    "guess_model_name",
    "is_aligned",
    "load_weights",
    "measure",
    "official_shapes",
    "optimizer_official_shapes",
    "pad_optimizer_state",
    "pad_state_dict",
    "pad_to",
    "padding_is_zero",
    "read_state_dict",
    "strip_optimizer_state",
    "strip_prefixes",
    "strip_state_dict",
    "strip_to",
]
