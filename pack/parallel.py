"""Run per-shard jobs on worker processes behind one tqdm bar (images/s and ETA on stderr).

Workers handle whole shards and return only small results, so the parent never holds image
bytes; at most two jobs per worker are queued, so the parent's memory stays flat however many
shards there are. Workers count finished images in a shared integer that the parent polls, so
the bar moves per image rather than per 1250-image shard. One worker runs in-process (no pool
start-up, easy to debug).
"""
from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from tqdm import tqdm

from hrnet_fast.errors import UserError
from hrnet_fast.host import usable_cores

Job = TypeVar("Job")
Result = TypeVar("Result")
Progress = Callable[[int], None]  # a job calls it with the number of images it just finished
POLL_S = 0.25

_counter: Any = None  # the shared image counter, set in each worker by _init_worker


def default_workers() -> int:
    """All cores this process may run on."""
    return usable_cores()


def run_jobs(fn: Callable[[Job, Progress], Result], jobs: Iterable[Job], workers: int,
             total: int, desc: str) -> Iterator[Result]:
    """Yield `fn(job, progress)` for every job, in completion order; `progress(n)` ticks the bar."""
    with tqdm(total=total, desc=desc, unit="img", dynamic_ncols=True,
              file=sys.stderr, smoothing=0.1) as bar:
        if workers <= 1:
            for job in jobs:
                yield fn(job, bar.update)
            return
        yield from _pooled(fn, iter(jobs), workers, bar)


def _pooled(fn: Callable, jobs: Iterator, workers: int, bar: tqdm) -> Iterator:
    context = multiprocessing.get_context()
    counter = context.Value("q", 0)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(counter,))
    pending: set[Future] = set()
    try:
        while True:
            for job in jobs:
                pending.add(pool.submit(_run, fn, job))
                if len(pending) >= 2 * workers:
                    break
            if not pending:
                break
            done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            bar.update(counter.value - bar.n)
            for future in done:
                yield future.result()
    except BrokenProcessPool:
        raise UserError("a worker process died (killed, or out of memory: try fewer --workers); "
                        "run the same command again to continue") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(counter: Any) -> None:
    global _counter  # noqa: PLW0603 - per-process handle to the shared counter
    _counter = counter


def _tick(n: int) -> None:
    with _counter.get_lock():
        _counter.value += n


def _run(fn: Callable, job: Any) -> Any:
    return fn(job, _tick)
