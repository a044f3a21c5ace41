"""How much does `make demo`'s Acc@1 vary with the seed and the CPU's kernel path? Not a test.

    python benchmarks/demo_spread.py [--seeds 0,1,2] [--paths native,avx2] [--epochs N]

Runs tools/demo.sh (digits -> pack -> train -> eval) once per seed and kernel path, each in a
temporary DEMO_DIR, and prints one row per run, then min / median / max of Acc@1 and of the wall
seconds of the whole demo. A kernel path other than `native` makes this CPU run the code another
one would: ATen's vectorized kernels and oneDNN's convolutions are capped at that instruction set
(avx2: an AMD EPYC without AVX-512; default: SSE4.1, scalar ATen), so their float rounding differs
and training takes another trajectory. 6 runs of about 2 minutes on a quiet 2-core box; too long
for benchmarks/run_all.py, which is about speed, so it stands alone.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNEL_PATHS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
EVAL_LINE = re.compile(r"Acc@1 ([\d.]+) Acc@5 ([\d.]+) images (\d+)")


def run_demo(seed: int, path: str, epochs: int | None) -> tuple[float, float]:
    """One tools/demo.sh run in a temporary directory: (Acc@1, wall seconds)."""
    with tempfile.TemporaryDirectory(prefix="demo-spread-") as tmp:
        env = {**os.environ, **KERNEL_PATHS[path], "DEMO_DIR": str(Path(tmp) / "demo"), "SEED": str(seed),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        if epochs is not None:
            env["EPOCHS"] = str(epochs)
        start = time.perf_counter()
        done = subprocess.run(["bash", str(ROOT / "tools" / "demo.sh")], check=False, cwd=ROOT, env=env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    match = EVAL_LINE.fullmatch(lines[-1]) if lines else None
    if done.returncode or not match:
        sys.exit(f"demo (seed {seed}, {path}) failed with exit {done.returncode}:\n{done.stderr[-2000:]}")
    return float(match.group(1)), seconds


def spread(values: list[float]) -> str:
    return f"min {min(values):.2f}  median {statistics.median(values):.2f}  max {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated train seeds [0,1,2].")
    parser.add_argument("--paths", default="native,avx2",
                        help=f"Comma-separated kernel paths, of {', '.join(KERNEL_PATHS)} [native,avx2].")
    parser.add_argument("--epochs", type=int, help="Train epochs [demo.sh's default].")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    paths = args.paths.split(",")
    unknown = set(paths) - set(KERNEL_PATHS)
    if unknown:
        parser.error(f"unknown kernel path(s) {', '.join(sorted(unknown))}: choose from {', '.join(KERNEL_PATHS)}")
    print(f"{'path':8} {'seed':>4} {'Acc@1':>7} {'wall s':>7}", flush=True)
    accs, walls = [], []
    for path in paths:
        for seed in seeds:
            acc1, seconds = run_demo(seed, path, args.epochs)
            accs.append(acc1)
            walls.append(seconds)
            print(f"{path:8} {seed:>4} {acc1:7.2f} {seconds:7.1f}", flush=True)
    print(f"Acc@1   {spread(accs)}\nwall s  {spread(walls)}")


if __name__ == "__main__":
    main()
