"""Read weights safely from any common checkpoint layout; refuse bad ones with a fix-it message.

Only `torch.load(weights_only=True)` is used: a checkpoint is data, and a file that needs
arbitrary unpickling could run code, so it is refused rather than trusted.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn as nn

from hrnet_fast.errors import UserError
from hrnet_fast.models.align import meta_shapes, official_shapes, pad_state_dict
from hrnet_fast.models.config import MODEL_NAMES, get_config

StateDict = dict[str, torch.Tensor]

_WRAPPER_KEYS = ("model", "state_dict")  # ours / timm's train.py checkpoints
_PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile wrappers
_CLASSIFIER_KEYS = ("classifier.weight", "classifier.bias")
_STEP_COUNTER = "num_batches_tracked"  # BN buffer absent from checkpoints older than PyTorch 0.4.1
# how torch's weights_only unpickler names the class or function a file wanted to run
_UNSAFE_GLOBAL = re.compile(r"(?:GLOBAL|Unsupported class)\s+([\w.]+)")


def read_state_dict(path: str | Path) -> tuple[StateDict, dict]:
    """The state dict in `path` (wrapper prefixes stripped) and the checkpoint's other entries
    (`model_name`, `classes`, `epoch`, ... for our checkpoints; empty for a plain state dict)."""
    path = Path(path)
    content = _load(path)
    if not isinstance(content, Mapping):
        raise UserError(f"{path} holds a {type(content).__name__}, not a state dict: save model.state_dict()")
    state, meta = dict(content), {}
    for key in _WRAPPER_KEYS:
        if isinstance(content.get(key), Mapping):
            state, meta = dict(content[key]), {k: v for k, v in content.items() if k != key}
            break
    if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        keys = ", ".join(map(str, list(content)[:5]))
        raise UserError(f"{path} has no state dict (top-level keys: {keys}): "
                        "expected tensors or a 'model' / 'state_dict' entry")
    return strip_prefixes(state), meta


def _load(path: Path) -> object:
    """torch.load with weights_only, its many failure types turned into one clear UserError."""
    if not path.exists():
        raise UserError(f"checkpoint {path} not found: check the path")
    if path.is_dir():
        raise UserError(f"{path} is a directory: pass the checkpoint file (e.g. {path}/checkpoints/last.pt)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # torch.load raises UnpicklingError, RuntimeError, EOFError, KeyError, ...
        unsafe = _UNSAFE_GLOBAL.search(str(exc))
        if unsafe:
            raise UserError(
                f"{path} is not a plain weights file; it would run code when loaded (it pickles {unsafe.group(1)}): "
                "if you trust it, re-save it with torch.save(model.state_dict(), PATH)"
            ) from None
        reason = (str(exc).strip().splitlines() or [""])[0][:120]
        raise UserError(
            f"{path} is not a PyTorch checkpoint or is damaged ({type(exc).__name__}: {reason}): "
            "pass a file written by torch.save"
        ) from None


def strip_prefixes(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Keys without DDP's `module.` and torch.compile's `_orig_mod.` prefixes (in any nesting)."""
    def strip(key: str) -> str:
        while key.startswith(_PREFIXES):
            key = key.split(".", 1)[1]
        return key

    return {strip(key): value for key, value in state.items()}


def load_weights(model: nn.Module, weights: Mapping[str, torch.Tensor] | str | Path, strict: bool = True) -> dict:
    """Load a state dict or checkpoint file into `model`; returns the checkpoint's other entries.

    Every mismatch raises UserError naming the first offending keys and the likely cause
    (wrong class count, wrong --model) instead of torch's multi-page RuntimeError. Weights are
    checked against the official shapes and padded on the way in, so a channel-aligned model
    takes the same files (and gives the same messages) as an unaligned one.
    """
    state, meta = read_state_dict(weights) if isinstance(weights, (str, Path)) else (strip_prefixes(weights), {})
    expected = official_shapes(model)
    problem = _mismatch_message(model, expected, state, strict)
    if problem:
        raise UserError(problem)
    for key, shape in expected.items():  # pre-0.4.1 checkpoints lack BN step counters; they are unused
        if key.endswith(_STEP_COUNTER) and key not in state:
            state[key] = torch.zeros(shape, dtype=torch.long)
    model.load_state_dict(pad_state_dict(state, model), strict=strict)
    return meta


def _mismatch_message(model: nn.Module, expected: Mapping[str, tuple[int, ...]], state: StateDict,
                      strict: bool) -> str | None:
    """Why `state` does not fit `model`, with the probable fix; None when it fits."""
    missing = [k for k in expected if k not in state and not k.endswith(_STEP_COUNTER)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if not mismatched and (not strict or not (missing or unexpected)):
        return None
    arch = getattr(model, "arch", type(model).__name__)
    if set(mismatched) <= set(_CLASSIFIER_KEYS) and (not strict or not (missing or unexpected)):
        have, want = state[mismatched[0]].shape[0], expected[mismatched[0]][0]
        return (f"checkpoint has {have} classes, model has {want}: "
                f"pass --num-classes {have} (or use the checkpoint's classes)")
    details = "; ".join(part for part in (
        _examples("missing", missing),
        _examples("unexpected", unexpected),
        _examples("shape mismatches", [f"{k} {tuple(state[k].shape)} vs {expected[k]}" for k in mismatched]),
    ) if part)
    guess = guess_model_name(state)
    if guess and guess != arch:
        return f"weights do not fit {arch}: checkpoint looks like {guess}: wrong --model? pass --model {guess} ({details})"
    if not set(state) & set(expected):
        return f"weights do not fit {arch}: no key in common, not an HRNet classification checkpoint? ({details})"
    return f"weights do not fit {arch}: {details}"


def _examples(what: str, items: list[str], shown: int = 3) -> str:
    """'N what: a, b, c, ...' or '' when there are none."""
    if not items:
        return ""
    more = ", ..." if len(items) > shown else ""
    return f"{len(items)} {what}: {', '.join(items[:shown])}{more}"


def guess_model_name(state: Mapping[str, torch.Tensor]) -> str | None:
    """The zoo model whose parameter shapes equal `state`'s (classifier aside), if any."""
    shapes = _identifying({k: tuple(v.shape) for k, v in state.items()})
    return next((name for name in MODEL_NAMES if _identifying(meta_shapes(get_config(name))) == shapes), None)


def _identifying(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Shapes that identify an architecture: not the classifier (class count), not step counters."""
    return {k: shape for k, shape in shapes.items() if k not in _CLASSIFIER_KEYS and not k.endswith(_STEP_COUNTER)}
