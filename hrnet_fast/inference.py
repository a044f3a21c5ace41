"""Loading a model for inference from any weights file: ours, official or timm, plain or DDP."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hrnet_fast import log as logs
from hrnet_fast.checkpoint import INFERENCE_KEYS, check_entries
from hrnet_fast.config import TrainConfig
from hrnet_fast.device import Device
from hrnet_fast.errors import UserError
from hrnet_fast.models import HRNet, create_model
from hrnet_fast.models.weights import load_weights, read_state_dict
from hrnet_fast.precision import MixedPrecision

log = logs.get(__name__)

CLASSIFIER_WEIGHT = "classifier.weight"


@dataclass
class LoadedModel:
    model: HRNet
    name: str
    precision: MixedPrecision
    classes: list[str] = field(default_factory=list)
    class_names: dict[str, str] = field(default_factory=dict)
    image_size: int = TrainConfig.image_size


def load_for_inference(ckpt: str, model_name: str | None, device: Device,
                       precision: str | None = None, align_channels: str = "auto") -> LoadedModel:
    """Model name and classes from our checkpoints (their entries checked against the schema),
    and the weights their `best_source` names (raw or EMA); `--model` for plain state dicts."""
    state, meta = read_state_dict(ckpt)
    check_entries(meta, Path(ckpt), INFERENCE_KEYS)
    if meta.get("best_source") == "ema":  # the run scored best with the average of its weights
        if meta.get("ema") is None:
            raise UserError(f"{ckpt} names its EMA weights as the best but holds none: it is damaged")
        state = meta["ema"]
        log.info(f"{ckpt}: its EMA weights (they scored best in training)")
    name = model_name or meta.get("model_name")
    if not name:
        raise UserError(f"{ckpt} is a plain state dict: pass --model (e.g. --model hrnet_w18)")
    if CLASSIFIER_WEIGHT not in state:
        raise UserError(f"{ckpt} has no {CLASSIFIER_WEIGHT}: it is not an HRNet classification checkpoint")
    num_classes = int(state[CLASSIFIER_WEIGHT].shape[0])
    model = create_model(name, num_classes=num_classes, align=device.channel_align(align_channels))
    load_weights(model, state)
    prec = MixedPrecision(precision or device.default_precision(), device)
    # torch's stubs lack Module.to(device, memory_format=...), which Module.to accepts
    model = model.to(device.torch_device, memory_format=device.memory_format)  # type: ignore[call-overload]
    prec.cast_model(model)
    model.eval()
    return LoadedModel(model, name, prec, list(meta.get("classes") or []),
                       dict(meta.get("class_names") or {}), meta.get("image_size") or TrainConfig.image_size)
