"""The host's CPUs as this process sees them."""
from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPUs this process may run on: its affinity mask (a container's cpuset, the slice
    launch/rank.sh gives a rank), else every CPU the OS reports."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
