"""The one console channel of hrnet-fast and pack: the `hrnet_fast` logger, set up at the CLI entry.

Why one logger: messages come from the trainer, the loader's worker processes, eval, predict and
pack; one place decides where each goes and who speaks. Information goes to stdout as plain lines
(`FPS 123.4`, `Acc@1 …`: launchers and users read them), warnings and errors to stderr as
`warning: …`. Under torchrun only rank 0 speaks (each rank would print the same line), except
for warnings, which every rank reports with its rank in front; `HRNET_LOG_ALL_RANKS=1` lets every
rank speak. Streams are looked up when a line is written, so redirected or captured stdout/stderr
(pytest, notebooks) receive the lines.
"""
from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger("hrnet_fast")


class _ConsoleHandler(logging.Handler):
    """INFO to stdout as the bare message; WARNING and above to stderr, marked with the level."""

    def __init__(self, rank: int, world_size: int) -> None:
        super().__init__()
        self.prefix = f"[rank {rank}] " if world_size > 1 else ""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                stream = sys.stderr
                message = f"{self.prefix}{record.levelname.lower()}: {message}"
            else:
                stream = sys.stdout
            stream.write(message + "\n")
            stream.flush()
        except Exception:  # a closed stream must not end the run
            self.handleError(record)


class _MainRankSpeaks(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        return self.rank == 0 or record.levelno >= logging.WARNING


def configure() -> logging.Logger:
    """Set up the `hrnet_fast` logger once per process (idempotent); returns it.

    The rank comes from torchrun's RANK / WORLD_SIZE, so loader workers forked from a rank inherit
    the rank's setting."""
    if not any(isinstance(h, _ConsoleHandler) for h in logger.handlers):
        rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        handler = _ConsoleHandler(rank, world_size)
        if os.environ.get("HRNET_LOG_ALL_RANKS") != "1":
            handler.addFilter(_MainRankSpeaks(rank))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def get(name: str) -> logging.Logger:
    """The logger of module `name` (`__name__`), a child of `hrnet_fast`'s for pack's modules too."""
    return logger.getChild(name.removeprefix("hrnet_fast."))
