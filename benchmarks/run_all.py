"""Every side-by-side comparison in one run: results.json, a Markdown table and a bar chart.

Why: each claim hrnet-fast makes against a tool users would pick instead is measured by its own
script in this folder; this runs them all the same way (each a subprocess with `--json`) and
writes one report, so a README table comes from one command on one machine.

    python benchmarks/run_all.py [--quick] [--device auto]
        [--only pack,loader,loader_peers,step,step_graph,step_compiled,end_to_end]
        [--workers N] [--timeout S] [--out benchmarks/out] [--report-only]

Comparisons: packing vs `tar -cf` (pack_vs_tar.py), the shard loader vs torchvision ImageFolder
(loader_vs_imagefolder.py) and vs FFCV / DALI on the CPU (loader_vs_peers.py; they come from
benchmarks/peers/setup.sh, and its rows say why when one is missing), the train step vs timm's
eager HRNet (step_vs_timm.py; eager, with graph capture, and compiled + captured), and training
from shards vs synthetic input (end_to_end.py). `--quick` shrinks the CPU-bound data work to a few
minutes on a 2-core box; the model work follows the device (small on the CPU, batch 256 at 224 px
on a GPU). `--report-only` re-renders report.md and report.png from OUT/results.json (e.g. after
copying a GPU run's results to a machine with matplotlib).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT))

from hrnet_fast.commands.options import DEVICE_CHOICES  # noqa: E402


@dataclass(frozen=True)
class Settings:
    quick: bool
    device: str
    accelerator: bool
    workers: int
    out: Path


@dataclass(frozen=True)
class Comparison:
    """One benchmark script: its flags for these settings, and how its JSON becomes table rows."""

    script: str
    flags: Callable[[Settings], list[str]]
    rows: Callable[[dict], list[dict]]


def row(label: str, ours: float, baseline: float, target: float, note: str = "") -> dict:
    """One table line: throughputs in images/s, ratio ours / baseline against a minimum ratio."""
    ratio = ours / baseline if baseline else float("nan")
    return {"label": label, "ours": ours, "baseline": baseline, "ratio": ratio, "target": target,
            "met": ratio >= target, "note": note}


def pack_flags(s: Settings) -> list[str]:
    if not s.quick:
        return ["--workers", str(s.workers)]
    images = max(400, 100 * s.workers)  # shards of 50: two or more per worker
    return ["--workers", str(s.workers), "--images", str(images), "--unique", "24", "--repeat", "1",
            "--shard-size", "50"]


def pack_rows(r: dict) -> list[dict]:
    copied = r["rows"][f"pack --resize 0 --workers {r['workers']} --no-restart-markers"]
    ours, wall = copied["images_per_s"], copied["wall_s"]
    return [row(f"Packing: `pack --resize 0 --no-restart-markers` ({r['workers']} workers) vs `tar -cf`", ours,
                r["rows"]["tar -cf"]["images_per_s"], 0.7,
                f"{r['images']} files; pack's {wall:.1f} s include {r['python_startup_s']:.1f} s of Python "
                f"start-up; by CPU time after start-up {r['pass_through_vs_tar_cpu']:.2f}x; `--resize 256`: "
                f"{r['resize256_images_per_s_per_core']:.0f} images per CPU-second (target 150); the default "
                f"(originals restart-coded): {r['restart_coded_images_per_s_per_core']:.0f} per CPU-second")]


def loader_flags(s: Settings) -> list[str]:
    if not s.quick:
        return ["--workers", str(s.workers)]
    batch = 16
    images = max(240, 3 * batch * s.workers)  # every worker needs whole batches each epoch
    return ["--workers", str(s.workers), "--images", str(images), "--batch-size", str(batch),
            "--batches", str(max(6, 2 * s.workers)), "--repeats", "1",
            "--work", str(s.out / f"loader_vs_imagefolder-{images}")]


def loader_rows(r: dict) -> list[dict]:
    note = f"{r['workers']} workers, batch {r['batch_size']}"
    baseline = r["imagefolder_images_per_s"]
    return [row("Loader: shards (original JPEGs) vs ImageFolder", r["shards_default_images_per_s"],
                baseline, 2.0, note),
            row("Loader: shards (`--resize 256`) vs ImageFolder", r["shards_resize256_images_per_s"],
                baseline, 3.0, note)]


def peers_flags(s: Settings) -> list[str]:
    if not s.quick:  # the script's defaults: 2000 photos, batch 256, best of 2 rounds
        return ["--workers", ",".join(str(w) for w in dict.fromkeys([1, s.workers])), "--out", str(s.out)]
    batch = 64
    images = max(600, 2 * batch * s.workers)
    return ["--workers", str(s.workers), "--images", str(images), "--batch", str(batch),
            "--images-per-round", "1024", "--rounds", "1", "--out", str(s.out),
            "--work", str(s.out / f"loader_vs_peers-{images}")]


def peers_rows(r: dict) -> list[dict]:
    """One row per photo set and worker count: hrnet-fast against the faster of FFCV and DALI."""
    rows = []
    for line in r["rows"]:
        cells, peer = line["cells"], line["best_peer"]
        workers = f"{line['workers']} worker{'s' if line['workers'] > 1 else ''}"
        label = f"Loader: shards vs the faster of FFCV / DALI CPU ({line['label']}, {workers})"
        ours = cells.get("hrnet_fast", {}).get("best", 0.0)
        refs = ", ".join(f"{key} {cells[key]['best']:.0f}" for key in ("torchvision_simd", "torchvision")
                         if "best" in cells.get(key, {}))
        if peer is None:
            why = "; ".join(f"{key}: {cell.get('skipped') or cell.get('failed')}" for key, cell in cells.items()
                            if key in ("ffcv", "dali") and "best" not in cell)
            rows.append(row(label, ours, 0.0, r["target"],
                            f"no peer measured ({why or 'none selected'}); run benchmarks/peers/setup.sh"))
            continue
        rows.append(row(label, ours, cells[peer]["best"], r["target"],
                        f"faster peer {peer} {cells[peer]['version']}; batch {r['batch']}, {r['images']} photos, "
                        f"best of {r['rounds']}; img/s of torchvision for reference: {refs or 'not measured'}"))
    return rows


def step_flags(s: Settings) -> list[str]:
    if s.accelerator:  # the script's defaults: batch 256 at 224 px, amp
        return ["--device", s.device, "--steps", "20" if s.quick else "50", "--warmup", "5" if s.quick else "10"]
    sized = ["--image-size", "64", "--steps", "3", "--warmup", "1"] if s.quick else ["--steps", "5", "--warmup", "2"]
    return ["--device", s.device, "--batch-size", "8", *sized]


def step_variant(*switches: str, target: float) -> Comparison:
    """step_vs_timm.py with our step built with `switches` (--graph, --compile); timm stays eager."""
    def flags(s: Settings) -> list[str]:
        return [*step_flags(s), *switches]

    def rows(r: dict) -> list[dict]:
        ours, timm = r["ours"], r["timm"]
        settings = " ".join([f"align {r.get('align_channels', 'off')}", *switches])
        note = (f"{r['model']} {r['precision']}, batch {r['batch_size']} @ {r['image_size']} px; peak "
                f"{ours['peak_memory_mb']:.0f} vs {timm['peak_memory_mb']:.0f} MB ({r['memory']}); warm-up "
                f"{ours['warmup_seconds']:.1f} vs {timm['warmup_seconds']:.1f} s")
        return [row(f"Train step: hrnet-fast ({settings}) vs timm eager", ours["images_per_s"],
                    timm["images_per_s"], target, note)]
    return Comparison("step_vs_timm.py", flags, rows)


def end_to_end_flags(s: Settings) -> list[str]:
    if not s.accelerator:  # the script's CPU defaults are the smoke run
        return ["--device", s.device]
    return ["--device", s.device, "--graph"]  # workers: the trainer's default, as users get


def end_to_end_rows(r: dict) -> list[dict]:
    note = (f"{r['model']} {r['precision']}{' --graph' if r.get('graph') else ''}, batch {r['batch_size']} "
            f"@ {r['image_size']} px, {r['workers']} workers, {r['stop_step']} steps; data wait {r['data_wait_share']:.0%}")
    return [row("Training: from shards vs synthetic input", r["shards_images_per_s"],
                r["synthetic_images_per_s"], 0.9, note)]


COMPARISONS = {
    "pack": Comparison("pack_vs_tar.py", pack_flags, pack_rows),
    "loader": Comparison("loader_vs_imagefolder.py", loader_flags, loader_rows),
    "loader_peers": Comparison("loader_vs_peers.py", peers_flags, peers_rows),
    "step": step_variant(target=1.0),
    "step_graph": step_variant("--graph", target=2.0),
    "step_compiled": step_variant("--compile", "--graph", target=2.0),
    "end_to_end": Comparison("end_to_end.py", end_to_end_flags, end_to_end_rows),
}
ACCELERATOR_ONLY = ("step_graph", "step_compiled")  # no graphs on the CPU, and inductor takes minutes


def default_comparisons(accelerator: bool) -> list[str]:
    """Every comparison the device can run, in order."""
    return [name for name in COMPARISONS if accelerator or name not in ACCELERATOR_ONLY]


def run_one(name: str, comparison: Comparison, settings: Settings, timeout: float | None) -> dict:
    """Run one script with --json; its result and rows, or the error. Output goes to OUT/logs/."""
    command = [sys.executable, str(HERE / comparison.script), *comparison.flags(settings), "--json"]
    print(f"== {name}: {' '.join(command)}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    logs = settings.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    entry: dict[str, Any] = {"command": command[1:], "result": None, "rows": [], "error": None}
    # A session of its own, so a timeout stops the script's children (pack, train workers) too.
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=timeout)
        if child.returncode:
            entry["error"] = f"exit {child.returncode}: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        stdout, stderr = child.communicate()
        entry["error"] = f"timed out after {timeout:.0f} s"
    except BaseException:  # Ctrl-C, or SIGTERM from an outer `timeout`: take the children along
        os.killpg(child.pid, signal.SIGKILL)
        raise
    entry["seconds"] = round(time.perf_counter() - start, 1)
    (logs / f"{name}.out").write_text(stdout)
    (logs / f"{name}.err").write_text(stderr)
    if entry["error"] is None:
        lines = stdout.strip().splitlines()
        print("\n".join(lines[:-1]))
        entry["result"] = json.loads(lines[-1])
        entry["rows"] = comparison.rows(entry["result"])
    else:
        print(f"{name} failed ({entry['error']}); see {logs / name}.err", file=sys.stderr)
    return entry


def machine(device: str) -> dict:
    """What the numbers were measured on, for the report's header."""
    import torch

    from hrnet_fast.device import resolve_device

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
    accel = resolve_device("auto")
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
            "accelerator": accel.describe() if accel.is_accelerator else None,
            "device": resolve_device(device).describe(), "torch": torch.__version__,
            "python": platform.python_version(), "date": datetime.datetime.now().isoformat(timespec="minutes"),
            "load_average_start": round(os.getloadavg()[0], 2)}


def markdown(results: dict) -> str:
    """The report: a header naming the machine, one simple table, notes per row."""
    m = results["machine"]
    lines = ["# hrnet-fast benchmarks", "",
             f"{m['date']} · CPU {m['cpu']}, {m['cores']} cores · accelerator {m['accelerator'] or 'none'} · "
             f"measured on {m['device']} · torch {m['torch']}, Python {m['python']} · "
             f"load average {m['load_average_start']} at start, {m.get('load_average_end', '?')} at end · "
             f"`{results['command']}` took {results['seconds'] / 60:.1f} min",
             "", "| Comparison | Ours (img/s) | Baseline (img/s) | Ratio | Target | Met |",
             "|---|---:|---:|---:|---:|:---:|"]
    notes = []
    for name, entry in results["comparisons"].items():
        if entry["error"]:
            lines.append(f"| {name} | – | – | – | – | failed: {entry['error']} |")
        for r in entry["rows"]:
            ratio = f"{r['ratio']:.2f}×" if math.isfinite(r["ratio"]) else "–"
            lines.append(f"| {r['label']} | {r['ours']:.1f} | {r['baseline']:.1f} | {ratio} | "
                         f"≥ {r['target']:.1f}× | {'yes' if r['met'] else 'no'} |")
            notes.append(f"- {r['label']}: {r['note']}")
    return "\n".join(lines + ["", *notes, ""])


def chart(results: dict, path: Path) -> bool:
    """Ratio bars with each row's target marked; False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for entry in results["comparisons"].values() for r in entry["rows"] if math.isfinite(r["ratio"])]
    if not rows:  # a row without a baseline (a skipped peer) has no bar
        return False
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(rows) + 1.5))
    ys = range(len(rows))
    ax.barh(ys, [r["ratio"] for r in rows], color=["tab:green" if r["met"] else "tab:red" for r in rows])
    for y, r in zip(ys, rows):
        ax.plot([r["target"]] * 2, [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text(max(r["ratio"], r["target"]), y, f"  {r['ratio']:.2f}×", va="center")
    ax.set_xlim(0, 1.15 * max(max(r["ratio"], r["target"]) for r in rows))
    ax.set_yticks(list(ys), [r["label"].replace("`", "") for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("ours / baseline (black line: target)")
    ax.set_title(f"hrnet-fast vs baselines on {results['machine']['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_reports(results: dict, out: Path) -> None:
    (out / "report.md").write_text(markdown(results))
    drew = chart(results, out / "report.png")
    print(f"wrote {out / 'results.json'}, {out / 'report.md'}"
          + (f", {out / 'report.png'}" if drew else " (no report.png: pip install matplotlib, then --report-only)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes: a few minutes on a 2-core CPU.")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                        help="For the train-step comparisons (packing and loading run on the CPU).")
    parser.add_argument("--only", help=f"Comma-separated subset of {','.join(COMPARISONS)}.")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="Worker processes for packing and loading [all usable cores].")
    parser.add_argument("--timeout", type=float, help="Seconds one comparison may take before it is stopped.")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--report-only", action="store_true", help="Re-render the reports from OUT/results.json.")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        write_reports(json.loads((args.out / "results.json").read_text()), args.out)
        return
    from hrnet_fast.device import resolve_device

    settings = Settings(args.quick, args.device, resolve_device(args.device).is_accelerator, args.workers, args.out)
    names = args.only.split(",") if args.only else default_comparisons(settings.accelerator)
    unknown = set(names) - set(COMPARISONS)
    if unknown:
        parser.error(f"unknown comparison(s) {', '.join(sorted(unknown))}: choose from {', '.join(COMPARISONS)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    start = time.perf_counter()
    results = {"command": " ".join(["run_all.py", *sys.argv[1:]]), "machine": machine(args.device),
               "comparisons": {}}
    for name in names:  # the reports are rewritten after each, so a cut-short run still leaves them
        results["comparisons"][name] = run_one(name, COMPARISONS[name], settings, args.timeout)
        results["seconds"] = round(time.perf_counter() - start, 1)
        results["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        write_reports(results, args.out)
    print((args.out / "report.md").read_text())
    if any(entry["error"] for entry in results["comparisons"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
