"""hrnet_fast.host: the CPU policy — usable CPUs, topology order, each local rank's slice and
share, the default loader workers, and the `python -m hrnet_fast.host` calls launch/ makes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hrnet_fast import host
from hrnet_fast.config import resolve
from hrnet_fast.host import cpu_list, cpus_per_rank, default_workers, rank_slice, topology_order

ROOT = Path(__file__).resolve().parent.parent


def host_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hrnet_fast.host", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=30)


def cpus_of(text: str) -> list[int]:
    """'0-2,5' → [0, 1, 2, 5]."""
    return [c for part in text.split(",") for c in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)]


def test_usable_cpus_are_the_affinity_mask():
    assert host.usable_cpus() == sorted(os.sched_getaffinity(0))
    assert host.usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("cores, nproc, share", [(2, 8, 1), (2, 2, 1), (2, 1, 2), (192, 8, 24), (7, 2, 3)])
def test_cpus_per_rank(cores, nproc, share):
    assert cpus_per_rank(cores, nproc) == share


@pytest.mark.parametrize("rank, nranks, cpus, expected", [
    (0, 8, range(192), "0-23"),
    (1, 8, range(192), "24-47"),
    (7, 8, range(192), "168-191"),
    (0, 1, [0, 1, 2, 3], "0-3"),
    (0, 3, [0, 1, 2, 3, 8, 9, 10, 11], "0-2"),  # 8 CPUs over 3 ranks: 3 + 3 + 2
    (1, 3, [0, 1, 2, 3, 8, 9, 10, 11], "3,8-9"),
    (2, 3, [0, 1, 2, 3, 8, 9, 10, 11], "10-11"),
    (5, 8, [0, 1], "1"),  # more ranks than CPUs: shared round-robin
])
def test_rank_slices(rank, nranks, cpus, expected):
    assert cpu_list(rank_slice(list(cpus), rank, nranks)) == expected


def test_ranks_get_whole_cores_of_one_numa_node(tmp_path, monkeypatch):
    """Two sockets x 4 cores x 2 threads, numbered as x86 servers do: 0-3 and 4-7 are the first
    threads of sockets 0 and 1, 8-15 their siblings in the same order."""
    for cpu in range(16):
        socket, core = (cpu % 8) // 4, cpu % 4
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / f"node{socket}").mkdir()
        (tmp_path / f"cpu{cpu}" / "topology" / "physical_package_id").write_text(f"{socket}\n")
        (tmp_path / f"cpu{cpu}" / "topology" / "core_id").write_text(f"{core}\n")
    monkeypatch.setenv("HRNET_SYSFS_CPU", str(tmp_path))
    order = topology_order(range(16))
    assert order == [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15]
    slices = [cpu_list(rank_slice(order, rank, 4)) for rank in range(4)]
    assert slices == ["0-1,8-9", "2-3,10-11", "4-5,12-13", "6-7,14-15"]  # plain order: 0-3, 4-7, 8-11, 12-15
    monkeypatch.setenv("HRNET_SYSFS_CPU", str(tmp_path / "none"))
    assert topology_order([3, 1, 2]) == [3, 1, 2]  # no topology: the given order


@pytest.mark.parametrize("usable, local_ranks, share, expected", [
    (16, 1, None, 8),   # one GPU on 16 cores: capped (each worker holds a shuffle buffer)
    (2, 1, None, 1),    # the 2-core box: one worker, one core drives the device
    (96, 8, None, 8),   # plain torchrun: 8 ranks share 96 cores, 12 each
    (32, 8, None, 3),   # 4 cores per rank, also when 32 is a container's cpuset on a larger host
    (12, 8, "12", 8),   # launch/run.sh: this rank is bound to 12 cores, the node's share is 12
    (3, 3, "2", 1),     # launch/run.sh: 8 CPUs over 3 ranks fall 3, 3, 2; all use the share
    (1, 1, None, 1),    # never fewer than one
])
def test_default_workers_follow_this_ranks_share_of_the_cpus(monkeypatch, usable, local_ranks, share, expected):
    monkeypatch.setattr(host, "usable_cores", lambda: usable)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_ranks))
    if share is None:
        monkeypatch.delenv("HRNET_CPUS_PER_RANK", raising=False)
    else:
        monkeypatch.setenv("HRNET_CPUS_PER_RANK", share)
    assert default_workers() == expected
    assert resolve({}, world_size=local_ranks).workers == expected
    assert resolve({"workers": 0}, world_size=local_ranks).workers == 0  # 0 (no worker processes) stays 0


def test_cli_share_and_slices_cover_the_usable_cpus():
    cpus = sorted(os.sched_getaffinity(0))
    assert host_cli("share", "--local-world-size", "3").stdout == f"{max(1, len(cpus) // 3)}\n"
    slices = host_cli("slices", "--local-world-size", "2").stdout.splitlines()
    assert len(slices) == 2
    if len(cpus) >= 2:  # disjoint, and together every usable CPU
        assert sorted(c for s in slices for c in cpus_of(s)) == cpus


def test_cli_bind_runs_the_command_on_the_slice():
    cpus = sorted(os.sched_getaffinity(0))
    show = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    result = host_cli("bind", "--local-rank", "1", "--local-world-size", "2", "--", *show)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{rank_slice(cpus, 1, 2)}\n"


@pytest.mark.parametrize("args, message", [
    (["bind", "--local-rank", "0", "--local-world-size", "1"], "bind needs -- COMMAND"),
    (["bind", "--local-rank", "2", "--local-world-size", "2", "--", "true"], "--local-rank must be"),
    (["share", "--local-world-size", "0"], "--local-world-size must be 1 or more"),
])
def test_cli_mistakes_are_one_line_usage_errors(args, message):
    result = host_cli(*args)
    assert result.returncode == 2 and message in result.stderr.splitlines()[-1], result.stderr


def test_cli_bind_names_a_missing_command():
    result = host_cli("bind", "--local-rank", "0", "--local-world-size", "1", "--", "/no/such/command")
    assert result.returncode == 127
    assert result.stderr == "hrnet_fast.host: error: cannot run /no/such/command: No such file or directory\n"
