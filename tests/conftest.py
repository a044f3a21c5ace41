"""Shared fixtures: a small real dataset (scikit-learn digits) packed once per session."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def run_cli(*args: str, check: bool = True, timeout: float = 300, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m ...` from the test venv; the output is kept for assertions."""
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})}, cwd=cwd or ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session", autouse=True)
def console_log():
    """In-process commands and trainers speak through the logger as the CLI entry sets it up."""
    from hrnet_fast import log

    log.configure()


def pytest_report_header() -> str:
    """Name the CPU kernel path the floats went through (`make test` runs the numerics twice)."""
    import torch

    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "all")
    return f"CPU kernels: ATen {torch.backends.cpu.get_cpu_capability()}, oneDNN ISA cap {isa}"


@pytest.fixture(scope="session")
def digits_tree(tmp_path_factory) -> Path:
    from make_digits import write_digits

    out = tmp_path_factory.mktemp("digits")
    write_digits(out, size=32)
    return out


@pytest.fixture(scope="session")
def tiny_shards(digits_tree, tmp_path_factory) -> Path:
    """At most 20 images per digit and split: 200 train in 8 shards of 25, 200 val in 8 shards."""
    out = tmp_path_factory.mktemp("tiny_shards")
    run_cli("-m", "pack", "imagenet", str(digits_tree), "--out", str(out), "--per-class-limit", "20",
            "--shard-size", "25", "--workers", "1", "--synset-names", str(digits_tree / "synset_names.txt"))
    return out
