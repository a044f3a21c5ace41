"""Loader worker processes that survive a signal to their rank's process group.

torchrun stops a rank by signalling its whole process group. DataLoader workers would die of
it at once, and the main process would then raise `DataLoader worker ... killed by signal` in
the middle of a step instead of finishing it, saving last.pt and exiting 0, which is what it
does on SIGTERM. So each worker moves to a process group of its own as it starts. The main
process still stops its workers itself (a signal to each pid), and a worker whose main process
is gone exits on its own (DataLoader's watchdog).

Two details make that hold:
- on Linux the workers are forked from the main process: under forkserver (Python 3.14's
  default) they would be children of the forkserver, which stays in the group, dies of the
  signal, and takes them along;
- the main thread holds SIGTERM back while the workers start, and they inherit that. A SIGTERM
  that reaches the group before a worker has left it stays pending in the worker, which takes
  it off after leaving; the main process handles its own copy once it lets SIGTERM through.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

_POSIX = hasattr(os, "setpgid") and hasattr(signal, "pthread_sigmask")


def dataloader_options(num_workers: int) -> dict[str, Any]:
    """DataLoader keyword arguments for workers that leave the rank's process group."""
    if not num_workers or not _POSIX:
        return {}
    options: dict[str, Any] = {"worker_init_fn": leave_process_group}
    if sys.platform.startswith("linux"):
        options["multiprocessing_context"] = "fork"
    return options


@contextlib.contextmanager
def sigterm_held() -> Iterator[None]:
    """Hold SIGTERM back in this thread (and the processes and threads it starts) meanwhile."""
    if not _POSIX:
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def leave_process_group(_worker_id: int) -> None:
    """worker_init_fn: a process group of the worker's own, then SIGTERM let through again.

    The handler stays torch's (exit quietly when the main process stops the worker, die of any
    other sender's SIGTERM): a SIGTERM sent to the old group meanwhile is taken off the pending
    set instead, where sigtimedwait exists (Linux)."""
    os.setpgid(0, 0)
    if hasattr(signal, "sigtimedwait"):
        signal.sigtimedwait({signal.SIGTERM}, 0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
