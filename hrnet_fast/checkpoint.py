"""Checkpoints: their schema (built and checked here, nowhere else), atomic writes (temp file +
fsync + rename) and `weights_only` loading.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it loads with
`torch.load(weights_only=True)`: the model's fp32 state dict (official key names and shapes),
its EMA (when on) beside it, optimizer, loss scaler, epoch/step/loader position, RNG states, config and class list.
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrnet_fast.atomic import atomic_write
from hrnet_fast.errors import UserError

LAST = "last.pt"
BEST = "best.pt"
FORMAT = "hrnet-fast-checkpoint"
VERSION = 1  # raise when a key changes meaning or goes away; readers refuse newer versions

# Every entry and the type it holds. Eval and predict read the ones in INFERENCE_KEYS when present
# (official files have none of them; timm's have their own `version`, hence the format check
# first); resuming needs all that RESUME_KEYS names.
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "format": str, "version": int, "model": dict, "ema": (dict, type(None)), "model_name": str, "num_classes": int,
    "classes": list, "class_names": dict, "image_size": int, "optimizer": dict, "precision": dict, "epoch": int,
    "batch_in_epoch": int, "step": int, "best_acc1": (float, int, type(None)), "best_source": str, "rng": dict,
    "config": dict,
}
INFERENCE_KEYS = ("model_name", "classes", "class_names", "image_size", "ema", "best_source")
BEST_SOURCES = ("raw", "ema")  # best_source: which weights scored best_acc1, the ones eval and predict use
RESUME_KEYS = ("model", "model_name", "optimizer", "precision", "epoch", "batch_in_epoch", "step", "rng", "config")


def build(*, model: dict[str, torch.Tensor], ema: dict[str, torch.Tensor] | None, model_name: str, num_classes: int,
          classes: Sequence[str], class_names: Mapping[str, str], image_size: int, optimizer: dict[str, Any],
          precision: dict[str, Any], epoch: int, batch_in_epoch: int, step: int, best_acc1: float | None,
          best_source: str, rng: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint dict, from explicit parts: the one place that decides what a checkpoint
    holds. `model` (the raw weights, what training continues from), `ema` (their average, None
    without --ema-decay) and `optimizer` must already be in official shapes (padding lives only
    in memory), so files fit any --align-channels and official code. `best_source` names which
    of the two scored `best_acc1`: eval and predict load those."""
    if best_source not in BEST_SOURCES or (best_source == "ema" and ema is None):
        raise ValueError(f"best_source {best_source!r} with{'out' if ema is None else ''} EMA weights")
    return {"format": FORMAT, "version": VERSION, "model": model, "ema": ema, "model_name": model_name,
            "num_classes": num_classes, "classes": list(classes), "class_names": dict(class_names),
            "image_size": image_size, "optimizer": optimizer, "precision": precision, "epoch": epoch,
            "batch_in_epoch": batch_in_epoch, "step": step, "best_acc1": best_acc1, "best_source": best_source,
            "rng": rng, "config": config}


def validate(ckpt: Any, path: Path) -> dict[str, Any]:
    """A checkpoint to resume from, checked: ours, readable by this version, every entry the
    resume needs present and of its type. Returns it; a one-line UserError otherwise."""
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        raise UserError(f"{path} is a weights file, not a training checkpoint: use it with "
                        "`hrnet-fast eval --ckpt` or start a fresh run")
    check_entries(ckpt, path)
    missing = [key for key in RESUME_KEYS if key not in ckpt]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}, so the run cannot continue from it: "
                        "resume from another checkpoint or start a fresh run (new --out)")
    return ckpt


def check_entries(ckpt: Mapping[str, Any], path: Path, keys: Sequence[str] = tuple(SCHEMA)) -> None:
    """The entries of `keys` that `ckpt` has are of their SCHEMA type, and a file of ours is no
    newer than this code reads; a one-line UserError otherwise."""
    if ckpt.get("format", FORMAT) != FORMAT:
        raise UserError(f"{path} is a {ckpt['format']!r} file, not an hrnet-fast checkpoint: "
                        "pass its weights alone (torch.save(model.state_dict())) with --model")
    if ckpt.get("format") == FORMAT and isinstance(ckpt.get("version"), int) and ckpt["version"] > VERSION:
        raise UserError(f"{path} is checkpoint version {ckpt['version']}, newer than this hrnet-fast "
                        f"reads ({VERSION}): upgrade hrnet-fast")
    wrong = [f"{key} is {type(ckpt[key]).__name__}" for key in keys
             if key in ckpt and not isinstance(ckpt[key], SCHEMA[key])]
    if wrong:
        raise UserError(f"{path} is damaged or not written by hrnet-fast ({', '.join(wrong)}): "
                        "use another checkpoint, or pass its weights alone with --model")


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """torch.save through a temporary file + fsync + rename: a crash never leaves a half checkpoint."""
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def _torch_load(path: Path, mmap: bool = False) -> Any:
    """torch.load(weights_only) on the CPU; a user-facing error for an unreadable file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:
        raise UserError(f"{path} is not a loadable checkpoint ({type(exc).__name__}); "
                        "was it written completely by hrnet-fast?") from None


def load(path: Path) -> dict[str, Any]:
    """Load one of our checkpoints to resume from (weights_only), validated."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    return validate(_torch_load(path), path)


def read_config(path: Path) -> dict[str, Any]:
    """The run configuration stored in checkpoint `path`, without reading its tensors (mmap);
    the checkpoint is validated here, so a bad one is refused before any set-up."""
    return validate(_torch_load(path, mmap=True), path)["config"]


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's CPU generator states as tensors and lists (weights_only-safe)."""
    np_state = np.random.get_state(legacy=True)  # legacy=True, the default: numpy's stubs type the default as False
    if not isinstance(np_state, tuple):  # a dict only for bit generators other than np.random's MT19937
        raise TypeError(f"np.random's state is not MT19937's: {type(np_state).__name__}")
    return {
        "python": list(random.getstate()[1]), "python_pos": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what rng_state() saved, so a resumed run draws the same numbers."""
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    # no cached Gaussian (has_gauss 0, gauss 0.0): what set_state assumes for a 3-tuple, spelled out
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])


def find_resume(resume: str | None, run_dir: Path) -> Path | None:
    """`auto`: the run's last.pt if present (else a fresh start); a path: that file, which must exist."""
    if resume is None:
        return None
    if resume == "auto":
        last = Path(run_dir) / "checkpoints" / LAST
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise UserError(f"--resume {resume}: no such file (use --resume auto to continue the run in --out)")
    return path
