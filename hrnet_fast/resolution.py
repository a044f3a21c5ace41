"""The train crop size as a pure function of (config, epoch): progressive resizing, `--res`.

FFCV's rule: small crops early are cheap and teach coarse features, larger ones late match the
val size. The size goes linearly from START at FROM_EPOCH to END at TO_EPOCH, rounded to a
multiple of SIZE_STEP so a run has only a few static shapes (each one is a compilation or a graph
capture); before FROM_EPOCH it is START, from TO_EPOCH on END. A function of the epoch: resume
needs nothing saved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hrnet_fast.errors import UserError

if TYPE_CHECKING:  # config validates --res with parse_res: no import back at run time
    from hrnet_fast.config import TrainConfig

SIZE_STEP = 32  # HRNet downsamples 32×; sizes between steps would only add shapes
RES_FORMAT = "START:END[:FROM_EPOCH:TO_EPOCH]"


@dataclass(frozen=True)
class Ramp:
    """Crop sizes START → END over the epochs FIRST → LAST (inclusive)."""

    start: int
    end: int
    first: int
    last: int

    def size_at(self, epoch: int) -> int:
        """START up to FIRST, END from LAST on, between them the line rounded to SIZE_STEP (halves up)."""
        if epoch >= self.last:  # first, so that FROM_EPOCH == TO_EPOCH is a step to END at that epoch
            return self.end
        if epoch <= self.first:
            return self.start
        size = self.start + (self.end - self.start) * (epoch - self.first) / (self.last - self.first)
        return SIZE_STEP * math.floor(size / SIZE_STEP + 0.5)


def parse_res(text: str, epochs: int) -> Ramp:
    """`--res START:END[:FROM_EPOCH:TO_EPOCH]` for a run of `epochs`: FROM_EPOCH defaults to 0,
    TO_EPOCH to the last epoch (epochs - 1), so the ramp spans the run whatever --epochs is."""
    try:
        numbers = [int(part) for part in text.split(":")]
    except ValueError:
        numbers = []
    if len(numbers) not in (2, 4):
        raise UserError(f"--res {text}: write {RES_FORMAT} in pixels and epochs, e.g. 160:192 or 160:192:29:34")
    start, end, first, last = (*numbers, 0, epochs - 1)[:4]
    if min(start, end) < SIZE_STEP or start % SIZE_STEP or end % SIZE_STEP:
        raise UserError(f"--res {text}: START and END must be multiples of {SIZE_STEP} px, at least {SIZE_STEP}")
    if not 0 <= first <= last < epochs:
        raise UserError(f"--res {text}: need 0 <= FROM_EPOCH <= TO_EPOCH < --epochs ({epochs})")
    return Ramp(start, end, first, last)


def image_size_at(cfg: TrainConfig, epoch: int) -> int:
    """The train crop size of `epoch`: the --res ramp's, else --image-size throughout."""
    if cfg.res is None:
        return cfg.image_size
    return parse_res(cfg.res, cfg.epochs).size_at(epoch)
