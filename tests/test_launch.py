"""launch/: flag checking, the device environment, the torchrun command (--dry-run), CPU slices,
the seed-style wrappers, and one real 2-rank CPU run."""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrnet_fast.host import cpu_list, node_cpus, rank_slice

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch"
WRAPPERS = ["train_full_1p.sh", "train_full_8p.sh", "train_performance_1p.sh",
            "train_performance_8p.sh", "train_eval_1p.sh"]
# Variables the scripts set or honour: removed so the user's shell cannot change what we test.
FOREIGN = ("OMP_", "ASCEND_", "HCCL_", "NCCL_", "TORCH_NCCL_", "TORCH_ELASTIC_", "CUDA_", "TASK_QUEUE",
           "PTCOPY", "COMBINED_", "HRNET_", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    env["PYTHON"] = sys.executable
    env.update(extra)
    return env


def run(script: str, *args: str, cwd: Path = ROOT, env: dict | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(LAUNCH / script), *args], capture_output=True, text=True, cwd=cwd,
                          env=env or clean_env(), timeout=timeout)


def bash(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=env or clean_env(), timeout=30)


def sourced(script: str, code: str) -> str:
    """Run `code` with launch/SCRIPT's functions loaded; its stdout."""
    result = bash(f'set -euo pipefail; usage() {{ :; }}; source launch/{script}; {code}')
    assert result.returncode == 0, result.stderr
    return result.stdout


def env_after(script: str, prefix: str = "", env: dict | None = None) -> dict[str, str]:
    """The environment after `source launch/SCRIPT` in a fresh bash."""
    result = bash(f"{prefix} source launch/{script}; echo still-here >&2; env", env)
    assert result.returncode == 0 and "still-here" in result.stderr, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def dry_run(*args: str, cwd: Path = ROOT, env: dict | None = None) -> tuple[list[str], dict[str, str], str]:
    """run.sh --dry-run: (the torchrun command as words, the exported variables, all stdout)."""
    result = run("run.sh", "--dry-run", *args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    exports = dict(shlex.split(line)[1].split("=", 1) for line in lines if line.startswith("export "))
    return shlex.split(lines[-1]), exports, result.stdout


def after(words: list[str], marker: list[str]) -> list[str]:
    """The words after the first occurrence of the sequence `marker`."""
    for i in range(len(words)):
        if words[i:i + len(marker)] == marker:
            return words[i + len(marker):]
    raise AssertionError(f"{marker} not in {words}")


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    (tmp_path / "shards").mkdir()
    return tmp_path / "shards"


# ---- help and user mistakes ----------------------------------------------------------------------

@pytest.mark.parametrize("script", ["run.sh", "rank.sh", *WRAPPERS])
def test_help(script):
    result = run(script, "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr


def test_run_help_has_examples():
    text = run("run.sh", "--help").stdout
    assert "--nproc 1 --shards" in text and "--nproc 8 --shards shards/" in text
    assert "--nnodes 2 --node-rank 0 --addr" in text


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown flag: --bogus"),
    (["--nproc"], "--nproc needs a value"),
    (["--nproc", "--shards", "x"], "--nproc needs a value"),
    (["--nproc="], "--nproc needs a value"),
    (["--nproc", "0"], "--nproc must be a whole number ≥ 1"),
    (["--nproc", "abc"], "got 'abc'"),
    (["--nproc", "2", "--shards", "/no/such/dir"], "shard directory '/no/such/dir' not found"),
    (["--nnodes", "2"], "needs --addr"),
    (["--nnodes", "2", "--node-rank", "2", "--addr", "h"], "--node-rank must be"),
    (["--port", "70000", "--addr", "h"], "--port must be"),
    (["--nproc", "8", "--devices", "0,1"], "lists 2 devices but --nproc is 8"),
    (["--devices", "0;1"], "device ids must look like"),
    (["--device", "tpu"], "--device must be npu, cuda, cpu or auto"),
    (["--devices", "0,1", "--device", "cpu"], "--devices selects NPUs or GPUs"),
    (["stray"], "unexpected argument: stray"),
    (["--out", "a", "--", "--out=b"],
     "--out is given twice with different values, 'a' (before --) and 'b' (after --): keep one"),
    (["--device", "cpu", "--", "--device", "cuda"], "'cpu' (before --) and 'cuda' (after --)"),
    (["--", "--out", "a", "--out", "b"], "'a' (after --) and 'b' (after --)"),
    (["--", "--out"], "--out needs a value"),
    (["--", "--shards", "/no/such/dir"], "shard directory '/no/such/dir' not found"),
])
def test_run_rejects_mistakes(shards, args, message):
    if "--shards" not in args:
        args = ["--shards", str(shards), *args]
    result = run("run.sh", *args)
    assert result.returncode == 2
    first, *rest = result.stderr.splitlines()
    assert first.startswith("run.sh: error:") and message in first, result.stderr
    assert rest and rest[0].startswith("usage: launch/run.sh")
    assert result.stdout == ""


@pytest.mark.parametrize("script, args, message", [
    ("train_full_8p.sh", ["--bogus=1"], "unknown flag: --bogus"),
    ("train_full_8p.sh", ["--stop_step=5"], "unknown flag: --stop_step"),  # a performance flag
    ("train_performance_1p.sh", ["--data_path"], "--data_path needs a value"),
    ("train_full_8p.sh", ["--bs=100"], "--bs 100 does not split over 8 devices"),
    ("train_full_1p.sh", ["--precision_mode=fast"], "--precision_mode must be"),
    ("train_eval_1p.sh", [], "--pth_path is required"),
    ("train_eval_1p.sh", ["--pth_path=/no/such.pt"], "checkpoint '/no/such.pt' not found"),
])
def test_wrappers_reject_mistakes(shards, script, args, message):
    result = run(script, "--dry-run", f"--data_path={shards}", *args, cwd=shards.parent)
    assert result.returncode == 2 and message in result.stderr.splitlines()[0], result.stderr
    assert "usage: launch/" + script in result.stderr


# ---- the environment scripts ---------------------------------------------------------------------

def test_env_npu_sets_the_ascend_settings():
    env = env_after("env_npu.sh", "HRNET_DEVICES=0,1")
    assert env["ASCEND_RT_VISIBLE_DEVICES"] == "0,1"
    for name, value in {"TASK_QUEUE_ENABLE": "1", "COMBINED_ENABLE": "1",
                        "ASCEND_GLOBAL_LOG_LEVEL": "3", "ASCEND_SLOG_PRINT_TO_STDOUT": "0",
                        "ASCEND_GLOBAL_EVENT_ENABLE": "0", "HCCL_WHITELIST_DISABLE": "1"}.items():
        assert env[name] == value, name
    assert int(env["HCCL_CONNECT_TIMEOUT"]) >= 600 and int(env["HCCL_EXEC_TIMEOUT"]) == 1800  # = the group's
    assert "PTCOPY_ENABLE" not in env  # not a torch_npu 2.x setting
    assert "ASCEND_RT_VISIBLE_DEVICES" not in env_after("env_npu.sh")


def test_env_cuda_sets_the_nccl_settings():
    env = env_after("env_cuda.sh", "HRNET_DEVICES=2,3")
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1" and env["NCCL_DEBUG"] == "WARN"


@pytest.mark.parametrize("script", ["env_npu.sh", "env_cuda.sh"])
def test_env_scripts_keep_user_values_and_shell_options(script):
    env = env_after(script, env=clean_env(NCCL_DEBUG="INFO", HCCL_CONNECT_TIMEOUT="300"))
    assert env["NCCL_DEBUG"] == "INFO" and env["HCCL_CONNECT_TIMEOUT"] == "300"
    # Sourcing from a strict script works and leaves its options (errexit, nounset) as they were.
    result = bash(f'set -euo pipefail; before=$-; source launch/{script}; [[ $- == "$before" ]] && echo same')
    assert result.stdout.strip() == "same", result.stderr
    result = bash(f'before=$-; source launch/{script}; [[ $- == "$before" ]] && echo same')
    assert result.stdout.strip() == "same", result.stderr


def test_env_npu_sources_cann_set_env(tmp_path):
    toolkit = tmp_path / "ascend-toolkit"
    toolkit.mkdir()
    # Like CANN's own script it reads an unset variable and runs a failing command: sourcing it
    # from a `set -eu` script must still work, and leave that script's options as they were.
    (toolkit / "set_env.sh").write_text('export FAKE_CANN="yes${SOME_UNSET_VAR}"\nfalse\n')
    env = env_after("env_npu.sh", "set -eu;", clean_env(ASCEND_HOME=str(tmp_path)))
    assert env["FAKE_CANN"] == "yes"
    result = bash("set -eu; source launch/env_npu.sh; echo $-", clean_env(ASCEND_HOME=str(tmp_path)))
    assert "e" in result.stdout and "u" in result.stdout, result.stderr


@pytest.mark.skipif(Path("/usr/local/Ascend").exists() or Path("/etc/Ascend").exists(),
                    reason="a CANN install is present")
def test_env_npu_without_cann_is_a_one_line_note():
    result = bash("source launch/env_npu.sh; echo ok")
    assert result.stdout.strip() == "ok"
    assert len(result.stderr.splitlines()) == 1 and "no CANN set_env.sh found" in result.stderr


# ---- threads and CPU slices (the policy itself: tests/test_host.py) -----------------------------------

def test_threads_and_cpu_share_in_the_launch_env(shards):
    """Slices fall unevenly (8 CPUs over 3 ranks: 3, 3, 2), but OMP threads and the default worker
    count come from the share, and every rank gets the same one (run.sh exports it for all)."""
    cores = len(os.sched_getaffinity(0))
    for nproc in (1, 2, 3, 8):
        _, exports, _ = dry_run("--nproc", str(nproc), "--device", "cpu", "--shards", str(shards))
        assert exports["OMP_NUM_THREADS"] == exports["HRNET_CPUS_PER_RANK"] == str(max(1, cores // nproc))
    _, exports, _ = dry_run("--nproc", "8", "--device", "cpu", "--shards", str(shards),
                            env=clean_env(OMP_NUM_THREADS="3"))
    assert "OMP_NUM_THREADS" not in exports  # the user's value stays
    assert exports["HRNET_CPUS_PER_RANK"] == str(max(1, cores // 8))


def test_dry_run_shows_each_local_ranks_cpu_slice(shards):
    cpus = sorted(os.sched_getaffinity(0))
    _, _, text = dry_run("--nproc", "2", "--device", "cpu", "--shards", str(shards))
    slices = [line.split(": CPU cores ")[1] for line in text.splitlines() if line.startswith("# local rank ")]
    assert slices == [cpu_list(rank_slice(node_cpus(), rank, 2)) for rank in (0, 1)]
    assert len(cpus) < 2 or slices[0] != slices[1]


def test_cuda_binding_is_torchruns_numa_binding_where_it_has_one(shards, tmp_path):
    """torchrun --numa-binding runs numactl: with it (a stand-in here) torchrun binds the ranks near
    their GPUs and rank.sh leaves them be; without it our own slices stand."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "numactl").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "bin" / "numactl").chmod(0o755)
    env = clean_env(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    words, _, text = dry_run("--nproc", "8", "--device", "cuda", "--shards", str(shards), env=env)
    assert after(words, ["--max-restarts", "0"])[:3] == ["--numa-binding", "exclusive", "--no-python"]
    assert after(words, ["--no-python"])[:5] == [str(LAUNCH / "rank.sh"), "--log-dir", "runs/hrnet_w18-8p/logs",
                                                 "--no-bind", "--"]
    assert "# CPU binding: torchrun --numa-binding exclusive" in text and "# local rank" not in text
    path_without_numactl = ":".join(p for p in os.environ["PATH"].split(":") if not Path(p, "numactl").exists())
    words, _, text = dry_run("--nproc", "8", "--device", "cuda", "--shards", str(shards),
                             env=clean_env(PATH=path_without_numactl))
    assert "--numa-binding" not in words and "--no-bind" not in words
    assert sum(line.startswith("# local rank ") for line in text.splitlines()) == 8


def test_rank_sh_binds_each_rank_and_logs(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    show = [sys.executable, "-c", "import os; print('cpus', sorted(os.sched_getaffinity(0)))"]
    seen = {}
    for rank in (0, 1):
        env = clean_env(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2", RANK=str(rank + 2))
        result = run("rank.sh", "--log-dir", str(tmp_path), "--", *show, env=env)
        assert result.returncode == 0, result.stderr
        log = (tmp_path / f"rank{rank + 2}.log").read_text()
        seen[rank] = log
        assert (log in result.stdout) == (rank == 0)  # local rank 0 also on the console
    half = len(cpus) // 2
    assert seen[0].strip() == f"cpus {cpus[:half + len(cpus) % 2]}"
    assert seen[1].strip() == f"cpus {cpus[half + len(cpus) % 2:]}"
    env = clean_env(LOCAL_RANK="1", LOCAL_WORLD_SIZE="2", RANK="1")
    run("rank.sh", "--log-dir", str(tmp_path), "--no-bind", "--", *show, env=env)
    assert (tmp_path / "rank1.log").read_text().strip() == f"cpus {cpus}"


def test_rank_sh_tells_every_rank_the_same_share_of_the_cpus(tmp_path):
    """Slices fall unevenly (8 CPUs over 3 ranks: 3, 3, 2), but the default worker count comes
    from the share, and every rank must get the same one, also under torchrun without run.sh."""
    show = [sys.executable, "-c", "import os; print(os.environ['HRNET_CPUS_PER_RANK'])"]
    share = max(1, len(os.sched_getaffinity(0)) // 3)
    for rank in range(3):
        env = clean_env(LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="3", RANK=str(rank))
        assert run("rank.sh", "--log-dir", str(tmp_path), "--", *show, env=env).returncode == 0
        assert (tmp_path / f"rank{rank}.log").read_text().strip() == str(share)


def test_rank_sh_passes_the_exit_status(tmp_path):
    for local_rank in ("0", "1"):
        env = clean_env(LOCAL_RANK=local_rank, LOCAL_WORLD_SIZE="2", RANK=local_rank)
        assert run("rank.sh", "--log-dir", str(tmp_path), "--", "bash", "-c", "exit 3", env=env).returncode == 3


def test_rank_sh_lets_a_group_sigterm_end_the_run_cleanly(tmp_path):
    """torchrun signals the rank's whole process group: the trainer's last lines (checkpoint
    saved, FPS) must still reach the console and the log, and its exit status must stand."""
    trainer = ("import signal, sys, time\n"
               "def stop(*_):\n"
               "    time.sleep(0.5)\n"
               "    print('saved last.pt', flush=True)\n"
               "    sys.exit(0)\n"
               "signal.signal(signal.SIGTERM, stop)\n"
               "print('training', flush=True)\n"
               "time.sleep(60)\n")
    env = clean_env(LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", RANK="0")
    proc = subprocess.Popen([str(LAUNCH / "rank.sh"), "--log-dir", str(tmp_path), "--no-bind", "--",
                             sys.executable, "-c", trainer], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env, start_new_session=True)
    assert proc.stdout.readline() == "training\n"
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == "saved last.pt\n"
    assert (tmp_path / "rank0.log").read_text() == "training\nsaved last.pt\n"


# ---- the torchrun command ---------------------------------------------------------------------------

def test_dry_run_design_card_line_8p(shards):
    """`launch/run.sh --nproc 8 --shards shards/` verbatim (device auto-detected: cpu here)."""
    words, exports, text = dry_run("--nproc", "8", "--shards", "shards/", cwd=shards.parent)
    assert words[:4] == [sys.executable, "-m", "hrnet_fast.torchrun", "runs/hrnet_w18-8p"]
    assert words[4:10] == [
        "--nproc-per-node", "8", "--standalone", "--max-restarts", "0", "--no-python"]
    assert after(words, ["--no-python"])[:4] == [str(LAUNCH / "rank.sh"), "--log-dir", "runs/hrnet_w18-8p/logs", "--"]
    assert after(words, ["-m", "hrnet_fast"]) == [
        "train", "--shards", "shards/", "--device", "cpu", "--out", "runs/hrnet_w18-8p", "--resume", "auto"]
    assert "# device: cpu (auto-detected)" in text
    assert sum(line.startswith("# local rank ") for line in text.splitlines()) == 8
    assert exports["PYTHONPATH"].split(":")[0] == str(ROOT)
    assert exports["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == "300"  # time for the ranks to save after a stop signal


def test_dry_run_1p_with_devices_and_train_args(shards):
    words, exports, _ = dry_run("--devices", "5", "--device", "npu", "--shards", str(shards), "--max-restarts", "2",
                                "--", "--model", "hrnet_w32", "--lr", "0.2", "--note", "a b")
    assert after(words, ["--nproc-per-node"])[:4] == ["1", "--standalone", "--max-restarts", "2"]
    assert after(words, ["-m", "hrnet_fast"]) == [
        "train", "--shards", str(shards), "--device", "npu", "--out", "runs/hrnet_w32-1p", "--resume", "auto",
        "--model", "hrnet_w32", "--lr", "0.2", "--note", "a b"]
    assert exports["ASCEND_RT_VISIBLE_DEVICES"] == "5" and exports["TASK_QUEUE_ENABLE"] == "1"


def test_dry_run_keeps_the_users_resume(shards):
    words, _, _ = dry_run("--device", "cpu", "--shards", str(shards), "--out", "r", "--", "--resume=x.pt")
    assert after(words, ["-m", "hrnet_fast"]) == ["train", "--shards", str(shards), "--device", "cpu",
                                                 "--out", "r", "--resume=x.pt"]


@pytest.mark.parametrize("before, after_separator", [
    ([], ["--out", "r", "--device=cpu"]),
    (["--out", "r"], ["--out=r", "--device", "cpu"]),  # the same value twice is no conflict
    (["--device", "cpu"], ["--out", "r"]),
    ([], ["--out", "r", "--device", "auto"]),  # the trainer's word for auto-detection (cpu here)
])
def test_dry_run_takes_out_shards_and_device_after_the_separator(shards, before, after_separator):
    """Users paste trainer command lines after --: run.sh takes its flags from there."""
    words, _, text = dry_run("--nproc", "1", *before, "--", "--shards", str(shards), *after_separator,
                             "--lr", "0.2")
    assert after(words, ["--no-python"])[:3] == [str(LAUNCH / "rank.sh"), "--log-dir", "r/logs"]
    assert after(words, ["-m", "hrnet_fast"]) == [
        "train", "--shards", str(shards), "--device", "cpu", "--out", "r", "--resume", "auto", "--lr", "0.2"]
    assert "# device: cpu (" in text


def test_dry_run_two_nodes(shards):
    words, exports, text = dry_run("--nproc", "8", "--nnodes", "2", "--node-rank", "1", "--addr", "10.0.0.1",
                                   "--port", "29400", "--device", "cuda", "--shards", str(shards), "--no-bind")
    assert words[4:14] == [
        "--nproc-per-node", "8", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1",
        "--master-port", "29400"]
    assert "--standalone" not in words and "--no-bind" in words
    assert "--out" in words and after(words, ["--out"])[0] == "runs/hrnet_w18-16p"
    assert exports["NCCL_DEBUG"] == "WARN" and "CUDA_VISIBLE_DEVICES" not in exports
    assert "# local rank" not in text


def test_dry_run_accepts_urls_without_a_directory():
    words, _, _ = dry_run("--device", "cpu", "--shards", "pipe:curl -s http://h/train-{000000..000009}.tar")
    assert after(words, ["--shards"])[0] == "pipe:curl -s http://h/train-{000000..000009}.tar"


# ---- hrnet_fast.torchrun: torchrun with a one-line stop report -----------------------------------

@pytest.mark.parametrize("saved", [True, False])
def test_torchrun_reports_a_stop_signal_in_one_line(tmp_path, monkeypatch, capsys, saved):
    from torch.distributed.elastic.multiprocessing import SignalException

    from hrnet_fast import torchrun

    (tmp_path / "summary.json").write_text("{}")  # an earlier attempt's: must not count

    def stopped(args):
        assert args == ["--nproc-per-node", "2"]
        if saved:
            (tmp_path / "summary.json").write_text('{"stopped_by_signal": true}')
        raise SignalException("got signal", sigval=signal.SIGTERM)

    monkeypatch.setattr("torch.distributed.run.main", stopped)
    status = torchrun.main([str(tmp_path), "--nproc-per-node", "2"])
    out, err = capsys.readouterr()
    assert status == (0 if saved else 128 + signal.SIGTERM) and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("run.sh: stopped by SIGTERM: ")
    assert ("checkpoints saved" in err) == saved


def test_torchrun_on_another_node_counts_its_ranks_marker_as_saved(tmp_path, monkeypatch, capsys):
    """A launcher whose node does not hold rank 0 sees no summary.json: its local rank 0's marker
    (named in the ranks' environment) says the run saved."""
    from torch.distributed.elastic.multiprocessing import SignalException

    from hrnet_fast import torchrun

    def stopped(args):
        torchrun.report_saved(local_rank=1)  # not the node's local rank 0: writes nothing
        assert not list(tmp_path.iterdir())
        torchrun.report_saved(local_rank=0)
        raise SignalException("got signal", sigval=signal.SIGTERM)

    monkeypatch.setattr("torch.distributed.run.main", stopped)
    assert torchrun.main([str(tmp_path)]) == 0
    assert "checkpoints saved" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # the marker is removed once read
    monkeypatch.setattr("torch.distributed.run.main", lambda args: (_ for _ in ()).throw(
        SignalException("got signal", sigval=signal.SIGINT)))
    assert torchrun.main([str(tmp_path)]) == 128 + signal.SIGINT  # no marker, no summary: not saved


def test_torchrun_leaves_other_outcomes_to_torchrun(tmp_path, monkeypatch):
    from hrnet_fast import torchrun

    monkeypatch.setattr("torch.distributed.run.main", lambda args: None)
    assert torchrun.main([str(tmp_path)]) == 0
    monkeypatch.setattr("torch.distributed.run.main", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        torchrun.main([str(tmp_path)])
    assert torchrun.main([]) == torchrun.main(["--nproc-per-node"]) == 2


# ---- seed-style wrappers ------------------------------------------------------------------------------

def wrapper_dry_run(script: str, *args: str, cwd: Path) -> list[str]:
    result = run(script, "--dry-run", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout.strip().splitlines()[-1])


def test_train_full_8p_maps_the_ascend_flags(shards):
    words = wrapper_dry_run("train_full_8p.sh", f"--data_path={shards}", "--bs", "2048", "--lr=0.8",
                            "--precision_mode=allow_mix_precision", "--device=npu",
                            "--device_id=0,1,2,3,4,5,6,7", "--", "--workers", "6", cwd=shards.parent)
    assert after(words, ["--nproc-per-node"])[0] == "8"
    assert after(words, ["-m", "hrnet_fast"]) == [
        "train", "--shards", str(shards), "--device", "npu", "--out", "runs/train_full_8p", "--resume", "auto",
        "--recipe", "ascend", "--epochs", "100", "--batch-size", "256", "--precision", "o2", "--lr", "0.8",
        "--workers", "6"]


def test_train_performance_1p_stops_early(shards):
    words = wrapper_dry_run("train_performance_1p.sh", "--data_path", str(shards), "--device=cpu", cwd=shards.parent)
    train = after(words, ["-m", "hrnet_fast"])
    assert train[train.index("--recipe"):] == ["--recipe", "ascend", "--epochs", "1", "--stop-step", "1000"]
    assert train[train.index("--out") + 1].startswith("runs/train_performance_1p-")
    words = wrapper_dry_run("train_performance_8p.sh", "--data_path", str(shards), "--stop_step=50", "--device=cpu",
                            cwd=shards.parent)
    assert after(words, ["--stop-step"])[0] == "50" and after(words, ["--nproc-per-node"])[0] == "8"


def test_train_eval_1p_command(shards, tmp_path):
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"")
    result = run("train_eval_1p.sh", "--dry-run", f"--pth_path={ckpt}", f"--data_path={shards}", "--bs=50",
                 "--device=cuda", "--device_id=3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    *exports, command = result.stdout.strip().splitlines()
    assert "export CUDA_VISIBLE_DEVICES=3" in exports
    assert after(shlex.split(command), ["-m", "hrnet_fast"]) == [
        "eval", "--ckpt", str(ckpt), "--shards", str(shards), "--device", "cuda", "--json", "--batch-size", "50"]


def test_summary_lines_read_the_run_summary_and_eval_json(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"fps": 532.6789, "steps": 10, "best_acc1": 77.0,
                                                       "last_acc1": 76.65, "stopped_by_signal": False}, indent=1))
    (tmp_path / "eval.out").write_text('Acc@1 76.65\n{"acc1": 76.65, "acc5": 93.2, "images_per_s": 1234.5}\n')
    (tmp_path / "broken.json").write_text('{"fps": ')
    out = sourced("seed_style.sh", f'resolve_python; SECONDS=0; '
                  f'print_summary "$(json_value {tmp_path}/summary.json fps .1f)" '
                  f'"$(json_value {tmp_path}/summary.json last_acc1)" 0; '
                  f'json_value {tmp_path}/eval.out images_per_s; '
                  f'print_summary "$(json_value {tmp_path}/broken.json fps)" "$(json_value {tmp_path}/none acc1)" 0')
    lines = out.splitlines()
    durations = [lines.pop(2), lines.pop(-1)]  # whole seconds since SECONDS=0: 0, or more on a busy box
    assert all(re.fullmatch(r"E2E Training Duration sec : \d+", d) for d in durations), durations
    assert lines == ["Final Performance images/sec : 532.7", "Final Train Accuracy : 76.65",
                     "1234.5", "Final Performance images/sec : NA", "Final Train Accuracy : NA"]


# ---- one real run -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_rank_cpu_training_end_to_end(tmp_path):
    from shardgen import make_shards

    shards = make_shards(tmp_path / "shards", train=16, val=8, shard_size=4, num_classes=4, size=(40, 40))
    out = tmp_path / "run"
    result = run("run.sh", "--nproc", "2", "--device", "cpu", "--shards", str(shards), "--out", str(out),
                 "--", "--model", "hrnet_w18_small_v1", "--epochs", "1", "--batch-size", "4",
                 "--image-size", "32", "--workers", "0", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (out / "checkpoints" / "last.pt").is_file()
    assert "FPS " in result.stdout
    logs = {p.name: p.read_text() for p in (out / "logs").iterdir()}
    assert set(logs) == {"rank0.log", "rank1.log"}
    assert "FPS " in logs["rank0.log"]


TINY_TRAIN = ["--model", "hrnet_w18_small_v1", "--image-size", "32", "--batch-size", "4", "--workers", "0"]


@pytest.mark.slow
def test_out_after_the_separator_runs_and_logs_there(tiny_shards, tmp_path):
    """`run.sh --nproc 1 --shards S -- --out DIR ...`, a trainer command line pasted after --."""
    out = tmp_path / "run"
    result = run("run.sh", "--nproc", "1", "--shards", str(tiny_shards), "--", "--out", str(out), "--device", "cpu",
                 *TINY_TRAIN, "--stop-step", "2", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [p.name for p in (out / "logs").iterdir()] == ["rank0.log"]
    assert "FPS " in (out / "logs" / "rank0.log").read_text()
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "summary.json").is_file()
    assert not (tmp_path / "runs").exists()


def wait_until(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Poll `condition` until it holds; fail early if `proc` ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"exited {proc.returncode} before the condition held"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("whole_group", [True, False], ids=["process-group", "run.sh-only"])
def test_sigterm_stops_the_run_with_checkpoints_and_one_line(tiny_shards, tmp_path, whole_group):
    """Schedulers (scancel, Kubernetes) signal the launcher's whole process group; a plain `kill`
    reaches run.sh alone. Either way the ranks save, the exit status is 0, and the console shows
    one line about it instead of torchrun's SignalException traceback."""
    out = tmp_path / "run"
    with open(tmp_path / "stdout", "w+") as stdout, open(tmp_path / "stderr", "w+") as stderr:
        proc = subprocess.Popen([str(LAUNCH / "run.sh"), "--nproc", "1", "--device", "cpu", "--shards",
                                 str(tiny_shards), "--out", str(out), "--", *TINY_TRAIN, "--epochs", "100",
                                 "--log-interval", "1"],
                                stdout=stdout, stderr=stderr, cwd=tmp_path, env=clean_env(),
                                start_new_session=True)
        try:
            wait_until(lambda: (out / "metrics.jsonl").exists(), proc)  # the first steps are done
            if whole_group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        stdout.seek(0)
        stderr.seek(0)
        console = stdout.read() + stderr.read()
    assert proc.returncode == 0, console[-3000:]
    assert "Traceback" not in console and "SignalException" not in console, console[-3000:]
    assert [line for line in console.splitlines() if "stopped by SIGTERM" in line] == [
        f"run.sh: stopped by SIGTERM: checkpoints saved in {out} (summary.json); the same command resumes"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by_signal"] is True and summary["steps"] >= 1
    assert (out / "checkpoints" / "last.pt").is_file()
