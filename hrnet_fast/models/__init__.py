"""The HRNet classification zoo: build by name, load weights, measure size and compute."""
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
    "count_params",
    "create_model",
    "get_config",
    "guess_model_name",
    "load_weights",
    "measure",
    "read_state_dict",
    "strip_prefixes",
]
