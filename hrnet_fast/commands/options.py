"""Choices and help texts shared by several commands, rendered from the tables they describe
(TrainConfig and RECIPES, PRECISIONS, the model zoo, the device defaults), so `--help` cannot
drift from what a run does."""
from __future__ import annotations

from typing import Any

from hrnet_fast.config import ALIGN_CHOICES, DEFAULTS, LR_RULES, RECIPES, recipe_defaults
from hrnet_fast.device import BF16_FALLBACK, DEFAULT_CHANNEL_ALIGN, DEFAULT_PRECISION, KINDS
from hrnet_fast.host import MAX_DEFAULT_WORKERS
from hrnet_fast.models.config import MODEL_NAMES
from hrnet_fast.precision import PRECISIONS
from hrnet_fast.resolution import RES_FORMAT, SIZE_STEP
from hrnet_fast.schedule import SCHEDULES

DEVICE_CHOICES = ["auto", *KINDS]
PRECISION_CHOICES = list(PRECISIONS)
ALIGN_HELP = ("Run with branch widths zero-padded to a multiple of " + " / ".join(ALIGN_CHOICES[:-2]) +
              " (same math, faster on tensor cores); checkpoints keep official shapes [auto: " +
              ", ".join(f"{n or 'off'} on {kind}" for kind, n in DEFAULT_CHANNEL_ALIGN.items()) + "].")
MODEL_HELP = f"{', '.join(MODEL_NAMES)} (see `hrnet-fast models`)."
PRECISION_HELP = (" | ".join(f"{name} ({about})" for name, about in PRECISIONS.items()) + " [" + ", ".join(
    f"{name} on {kind}" + (f" ({BF16_FALLBACK} without bf16)" if name == "bf16" else "")
    for kind, name in DEFAULT_PRECISION.items()) + "].")
WORKERS_HELP = f"Loader worker processes per device [this rank's CPU cores - 1, at most {MAX_DEFAULT_WORKERS}]."
SCHEDULE_CHOICES = list(SCHEDULES)
SCHEDULE_TEXT = "LR after warm-up: " + "; ".join(f"{name}: {s.about}" for name, s in SCHEDULES.items())
RES_HELP = (f"Progressive resizing, {RES_FORMAT}: train crops go linearly from START px at FROM_EPOCH [0] "
            f"to END px at TO_EPOCH [the last epoch], in steps of {SIZE_STEP} px; a recipe's ramp yields to an "
            "--image-size given")
RECIPE_HELP = "; ".join(f"{name}: {recipe.about}" for name, recipe in RECIPES.items()) + "."
LR_HELP = ("Peak learning rate [recipe: " + ", ".join(
    f"{name} {recipe.values[rule]:g} {per}" for name, recipe in RECIPES.items()
    for rule, per in LR_RULES.items() if rule in recipe.values) + "].")


def shown(value: Any) -> str:
    """A setting's value as help texts write it: on/off, 1e-4 as 0.0001, milestones as 30/60/90,
    None (falls back on another setting) as unset."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "/".join(map(shown, value))
    return str(value)


def setting_help(text: str, setting: str) -> str:
    """`text` and the value the run takes when the flag is not given: '[0.9]', or for a setting
    that a recipe sets, each recipe's: '[recipe: reference 128, ascend 256, cosine 128]'."""
    if any(setting in recipe.values for recipe in RECIPES.values()):
        values = ", ".join(f"{name} {shown(value)}" for name, value in recipe_defaults(setting).items())
        return f"{text} [recipe: {values}]"
    return f"{text} [{shown(DEFAULTS[setting])}]"

