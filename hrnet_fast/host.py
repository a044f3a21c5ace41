"""The host's CPUs as this process sees them, and how the ranks of one node share them.

One owner for the CPU policy: the launch scripts ask it (`python -m hrnet_fast.host …`) and the
trainer's defaults come from it. Each local rank gets a contiguous slice of the usable CPUs in
topology order (NUMA node by node, physical core by physical core with the hyper-threads side by
side), so a rank holds whole cores of one node where the counts allow; every rank gets the same
share of the node (for OMP threads and loader workers) however unevenly the slices fall.

    python -m hrnet_fast.host share --local-world-size N    # CPUs per rank
    python -m hrnet_fast.host slices --local-world-size N   # each local rank's CPUs, one a line
    python -m hrnet_fast.host bind --local-rank R --local-world-size N -- COMMAND [ARGS...]
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

SYSFS_CPU = "/sys/devices/system/cpu"  # HRNET_SYSFS_CPU points elsewhere (tests)
SHARE_ENV = "HRNET_CPUS_PER_RANK"      # the launcher's share, when the rank is bound to a slice
MAX_DEFAULT_WORKERS = 8                # each holds a shuffle buffer of compressed samples (--shuffle-buffer)
UNPLACED = sys.maxsize                 # sorts CPUs sysfs cannot place last


def usable_cpus() -> list[int]:
    """The CPUs this process may run on: its affinity mask (a container's cpuset, the slice a
    launcher bound the rank to), else every CPU the OS reports."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def usable_cores() -> int:
    """How many CPUs this process may run on (see usable_cpus)."""
    return len(usable_cpus())


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return UNPLACED


def _placement(cpu: int, root: Path) -> tuple[int, int, int]:
    """(NUMA node, package, core) of `cpu` from sysfs; UNPLACED for what sysfs does not say."""
    cpu_dir = root / f"cpu{cpu}"
    nodes = sorted(int(p.name[4:]) for p in cpu_dir.glob("node*") if p.name[4:].isdigit())
    topology = cpu_dir / "topology"
    return (nodes[0] if nodes else UNPLACED, _read_int(topology / "physical_package_id"),
            _read_int(topology / "core_id"))


def topology_order(cpus: Iterable[int]) -> list[int]:
    """`cpus` NUMA node by node and, within a node, physical core by physical core with its
    hyper-threads side by side, so contiguous slices hold whole cores of one node. (Two-socket x86
    servers number every core's second thread after all the first ones: in plain order rank 4 of
    8 would get the siblings of rank 0's cores, on the other socket.) CPUs sysfs cannot place go
    last, in their given order."""
    root = Path(os.environ.get("HRNET_SYSFS_CPU", SYSFS_CPU))
    return sorted(cpus, key=lambda cpu: _placement(cpu, root))  # stable: ties keep the given order


def node_cpus() -> list[int]:
    """This node's usable CPUs in topology order: what the local ranks split."""
    return topology_order(usable_cpus())


def rank_slice(cpus: Sequence[int], rank: int, nranks: int) -> list[int]:
    """Local rank `rank`'s CPUs when `nranks` ranks split `cpus` into contiguous, disjoint slices
    (the first len(cpus) % nranks ranks get one extra); with fewer CPUs than ranks, rank r shares
    CPU r mod len(cpus). Sorted."""
    per, extra = divmod(len(cpus), nranks)
    if per == 0:
        return [cpus[rank % len(cpus)]]
    start = rank * per + min(rank, extra)
    return sorted(cpus[start:start + per + (rank < extra)])


def cpu_list(cpus: Sequence[int]) -> str:
    """Sorted CPUs as a taskset / numactl list: [0, 1, 2, 5] → '0-2,5'."""
    runs: list[list[int]] = []
    for cpu in cpus:
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1][-1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def cpus_per_rank(count: int, nranks: int) -> int:
    """Every local rank's equal share of `count` CPUs, at least 1: its OMP threads (more threads
    than cores only thrash) and the base of its loader worker count (ranks must agree on that)."""
    return max(1, count // nranks)


def default_workers() -> int:
    """Loader workers per rank: this rank's share of the CPUs less one for the process that
    drives the device, at most MAX_DEFAULT_WORKERS. One core decodes and crops roughly 600
    (full-size ImageNet JPEGs) to 1500 (short side 256) images/s; an accelerator wants thousands.

    The share is HRNET_CPUS_PER_RANK, which launch/run.sh exports (a bound rank sees only its
    slice), else the usable CPUs over LOCAL_WORLD_SIZE (plain torchrun). Ranks must agree (their
    data plans depend on it): train and eval take the least over all ranks
    (distributed.agreed_workers), for nodes that differ."""
    share = os.environ.get(SHARE_ENV)
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = int(share) if share else cpus_per_rank(usable_cores(), max(1, local_ranks))
    return max(1, min(cores - 1, MAX_DEFAULT_WORKERS))


def bind_to_slice(local_rank: int, local_world_size: int) -> None:
    """Narrow this process to local rank `local_rank`'s slice of the node's CPUs. Done before the
    trainer starts (launch/rank.sh execs it from here), the affinity holds for every thread and
    process it starts (OpenMP threads, loader workers). The rank then sees only its slice, so its
    share of the node goes along in HRNET_CPUS_PER_RANK (launch/run.sh's when it set one)."""
    node = node_cpus()
    os.environ.setdefault(SHARE_ENV, str(cpus_per_rank(len(node), local_world_size)))
    cpus = rank_slice(node, local_rank, local_world_size)
    try:
        os.sched_setaffinity(0, cpus)
    except AttributeError:  # not Linux
        print(f"hrnet_fast.host: no CPU affinity on {sys.platform}: local rank {local_rank} runs unbound",
              file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hrnet_fast.host",
                                     description="CPU policy for the local ranks (launch/ asks it).")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("share", "print each local rank's share of this node's CPUs"),
                       ("slices", "print each local rank's CPUs, one taskset list a line"),
                       ("bind", "run COMMAND on the local rank's slice of the CPUs")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--local-world-size", type=int, required=True)
        if name == "bind":
            sub.add_argument("--local-rank", type=int, required=True)
            sub.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.local_world_size < 1:
        parser.error("--local-world-size must be 1 or more")
    if args.command == "share":
        print(cpus_per_rank(usable_cores(), args.local_world_size))
    elif args.command == "slices":
        cpus = node_cpus()
        for rank in range(args.local_world_size):
            print(cpu_list(rank_slice(cpus, rank, args.local_world_size)))
    else:
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("bind needs -- COMMAND")
        if not 0 <= args.local_rank < args.local_world_size:
            parser.error("--local-rank must be 0 … --local-world-size - 1")
        bind_to_slice(args.local_rank, args.local_world_size)
        try:
            os.execvp(command[0], command)
        except OSError as error:  # exec failed: the command is missing or not executable
            print(f"hrnet_fast.host: error: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
            return 127
    return 0


if __name__ == "__main__":
    sys.exit(main())
