"""Checkpoints: atomic writes (temp file + fsync + rename) and `weights_only` loading.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it loads with
`torch.load(weights_only=True)`: the model's fp32 state dict (official key names and shapes),
optimizer, loss scaler, epoch/step/loader position, RNG states, config and class list.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from hrnet_fast.atomic import atomic_write
from hrnet_fast.errors import UserError

LAST = "last.pt"
BEST = "best.pt"


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
    """Load one of our checkpoints (weights_only); a user-facing error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "epoch" not in ckpt:
        raise UserError(f"{path} is a weights file, not a training checkpoint: use it with "
                        "`hrnet-fast eval --ckpt` or start a fresh run")
    return ckpt


def read_config(path: Path) -> dict[str, Any]:
    """The run configuration stored in checkpoint `path`, without reading its tensors (mmap)."""
    ckpt = _torch_load(path, mmap=True)
    config = ckpt.get("config") if isinstance(ckpt, dict) else None
    if not isinstance(config, dict):
        raise UserError(f"{path} is not a training checkpoint of hrnet-fast: start a fresh run (new --out)")
    return config


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]), "python_pos": random.getstate()[2],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))
    torch.set_rng_state(state["torch"])


def find_resume(resume: Optional[str], run_dir: Path) -> Optional[Path]:
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
