"""hrnet-fast's shard loader vs FFCV 1.0.2 and DALI 2.4.0 (CPU operators), per core, same photos.

Why: users who leave the ImageFolder pipeline pick FFCV or DALI, not torchvision; the shard loader
has to beat them at the same work on the same cores. Every loader makes training batches the
same way — RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3)) + random horizontal flip,
JPEG bytes to a uint8 batch on the CPU, batch 256 — with the same number of workers, on the same
photos: the originals, and a short-side-256 copy (`pack --resize 256`). hrnet-fast and DALI
read our shards; FFCV its .beton written from the same folder (re-encoded, quality 90);
torchvision reads the folder, with pillow-simd (.venv) and stock Pillow (peers venv) as
references. The ratio column is hrnet-fast / the faster of FFCV and DALI.

    python benchmarks/loader_vs_peers.py [--workers 1,2] [--rounds 2] [--images 2000] [--json]

FFCV, DALI and stock Pillow live in benchmarks/peers/.venv (benchmarks/peers/setup.sh);
without it, or with a peer that did not install, that column is skipped and the reason given.
Photos (tests/imagegen.photo_like, as loader_vs_imagefolder.py writes them), shards and FFCV's
.beton files are cached in --work between runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_DIR = HERE / "peers"
sys.path[:0] = [str(ROOT), str(HERE), str(PEERS_DIR)]

from loader_vs_imagefolder import SIZES, pack, rate, shard_batches, write_images  # noqa: E402
from run_peer import batches_per_round, default_warmup  # noqa: E402

SETUP_HINT = "run benchmarks/peers/setup.sh"
TARGET = 1.3  # hrnet-fast / best peer, per photo set and worker count


@dataclass(frozen=True)
class Column:
    """One loader of the table: where it runs and whether it counts as a peer for the ratio."""

    key: str
    label: str  # {version} is filled in from what ran
    peer: str | None  # run_peer.py --peer; None: hrnet-fast, in this process
    venv: str  # "main" (.venv, this interpreter) or "peers" (benchmarks/peers/.venv)
    rival: bool  # counts for "hrnet-fast / best peer"


COLUMNS = (
    Column("hrnet_fast", "hrnet-fast", None, "main", False),
    Column("ffcv", "FFCV {version}", "ffcv", "peers", True),
    Column("dali", "DALI {version} CPU", "dali", "peers", True),
    Column("torchvision_simd", "torchvision+pillow-simd", "torchvision", "main", False),
    Column("torchvision", "torchvision (stock Pillow)", "torchvision", "peers", False),
)
SETS = {"originals": ("originals", 0), "resize256": ("short side 256", 256)}  # key: (label, pack --resize)


def parse_workers(text: str) -> list[int]:
    """`1,2` → [1, 2]; each a positive worker count, in the order given, without repeats."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes comma-separated counts like 1,2, not {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--workers needs counts of at least 1, got {text!r}")
    return list(dict.fromkeys(counts))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=parse_workers, default=[1, 2], help="Comma-separated worker counts [1,2].")
    parser.add_argument("--rounds", type=int, default=2, help="Timed rounds per loader; the best counts.")
    parser.add_argument("--images", type=int, default=2000, help="Photo-like JPEGs to generate.")
    parser.add_argument("--images-per-round", type=int, default=4096, help="Images timed per round.")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epoch-repeat", type=int, default=1,
                        help="Each epoch visits the photos this many times [1: epochs of --images, so every "
                             "loader restarts its workers every few batches; ImageNet's epochs are 5000 batches long].")
    parser.add_argument("--sets", default="originals,resize256", help=f"Comma-separated subset of {','.join(SETS)}.")
    parser.add_argument("--only", help=f"Comma-separated subset of the columns {','.join(c.key for c in COLUMNS)}.")
    parser.add_argument("--work", type=Path, help="Photo, shard and .beton cache [benchmarks/out/loader_vs_peers-IMAGES].")
    parser.add_argument("--out", type=Path, default=HERE / "out", help="Where loader_vs_peers.{md,json} go.")
    parser.add_argument("--peers-venv", type=Path, default=PEERS_DIR / ".venv")
    parser.add_argument("--timeout", type=float, default=1200, help="Seconds one peer run may take.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last line.")
    args = parser.parse_args(argv)
    for name, value in (("--rounds", args.rounds), ("--images", args.images), ("--batch", args.batch),
                        ("--images-per-round", args.images_per_round)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    args.sets = args.sets.split(",")
    unknown = set(args.sets) - set(SETS)
    if unknown:
        parser.error(f"unknown set(s) {', '.join(sorted(unknown))}: choose from {', '.join(SETS)}")
    keys = [c.key for c in COLUMNS]
    args.only = args.only.split(",") if args.only else keys
    unknown = set(args.only) - set(keys)
    if unknown:
        parser.error(f"unknown column(s) {', '.join(sorted(unknown))}: choose from {', '.join(keys)}")
    if args.images < args.batch * max(args.workers):
        parser.error(f"--images {args.images} is less than a batch of {args.batch} per worker")
    args.work = args.work or HERE / "out" / f"loader_vs_peers-{args.images}"
    return args


def peer_status(venv: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """Why each peers-venv column cannot run ({} entries for those that can), and peers.json."""
    peers_venv = [c for c in COLUMNS if c.venv == "peers"]
    python, record = venv / "bin" / "python", venv / "peers.json"
    if not python.exists():
        return {c.key: f"no {display(venv)}" for c in peers_venv}, {}
    try:
        installed = json.loads(record.read_text())
    except (OSError, ValueError) as e:
        return {c.key: f"{display(record)} unreadable ({type(e).__name__})" for c in peers_venv}, {}
    reasons = {}
    for c in peers_venv:
        entry = installed.get(c.peer)
        if not isinstance(entry, dict):
            reasons[c.key] = f"{c.peer} not in {display(record)}"
        elif not entry.get("ok"):
            reasons[c.key] = entry.get("reason") or f"{c.peer} did not install"
    return reasons, installed


def display(path: Path) -> str:
    """A path relative to the repo where it is inside it, for short messages."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def run_peer(python: Path, peer: str, folder: Path, shards: Path, work: Path, workers: int,
             args: argparse.Namespace) -> dict[str, Any]:
    """One run_peer.py call: its per-round rates, or why it failed."""
    command = [str(python), str(PEERS_DIR / "run_peer.py"), "--peer", peer, "--folder", str(folder),
               "--shards", str(shards), "--work", str(work), "--workers", str(workers), "--batch", str(args.batch),
               "--rounds", str(args.rounds), "--images-per-round", str(args.images_per_round),
               "--epoch-repeat", str(args.epoch_repeat)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {args.timeout:.0f} s"}
    if done.returncode:
        return {"failed": f"exit {done.returncode}: {last_line(done.stderr)}"}
    try:
        result = json.loads(last_line(done.stdout))
    except ValueError:
        return {"failed": f"no JSON from run_peer.py: {last_line(done.stdout)}"}
    return {"images_per_s": result["images_per_s"], "best": max(result["images_per_s"]),
            "version": result["version"], "pillow": result["pillow"]}


def repeated(shards: Path, repeat: int) -> Path | str:
    """The shards, or (repeat > 1) a brace pattern over links that list them `repeat` times, so an
    epoch visits every photo `repeat` times as the peers' repeated index lists do."""
    if repeat == 1:
        return shards
    tars = sorted(shards.glob("train-*.tar"))
    links = shards.parent / f"{shards.name}-x{repeat}"
    links.mkdir(exist_ok=True)
    for n in range(repeat * len(tars)):
        link = links / f"part-{n:06d}.tar"
        if not link.is_symlink():
            link.symlink_to(tars[n % len(tars)].resolve())
    return f"{links}/part-{{000000..{repeat * len(tars) - 1:06d}}}.tar"


def run_ours(shards: Path, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    """hrnet-fast's TrainLoader in this process, rounds as run_peer.py times them."""
    import hrnet_fast

    batches = shard_batches(repeated(shards, args.epoch_repeat), args.batch, workers)
    count, warmup = batches_per_round(args.images_per_round, args.batch), default_warmup(workers)
    rates = [rate(batches, args.batch, warmup if i == 0 else 0, count) for i in range(args.rounds)]
    return {"images_per_s": [round(r, 1) for r in rates], "best": round(max(rates), 1),
            "version": hrnet_fast.__version__}


def best_peer(cells: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
    """The fastest measured rival column and hrnet-fast / its rate; (None, None) without one."""
    rivals = [(cells[c.key]["best"], c.key) for c in COLUMNS if c.rival and "best" in cells.get(c.key, {})]
    ours = cells.get("hrnet_fast", {}).get("best")
    if not rivals or not ours:
        return None, None
    value, key = max(rivals)
    return key, ours / value


def column_label(column: Column, versions: dict[str, str]) -> str:
    return column.label.format(version=versions.get(column.key, "?"))


def versions_of(results: dict[str, Any]) -> dict[str, str]:
    """Each column's version as measured, else as peers.json recorded it."""
    versions = {k: v["version"] for k, v in results.get("installed", {}).items()
                if isinstance(v, dict) and v.get("ok")}
    for row in results["rows"]:
        for key, cell in row["cells"].items():
            if "version" in cell:
                versions[key] = cell["version"]
    return versions


def cell_text(cell: dict[str, Any]) -> str:
    if "best" in cell:
        return f"{cell['best']:.0f}"
    return "skipped" if "skipped" in cell else "failed" if "failed" in cell else "–"


def markdown(results: dict[str, Any]) -> str:
    """The table (img/s, best of the rounds), a header naming machine and command, and notes."""
    m, versions = results["machine"], versions_of(results)
    columns = [c for c in COLUMNS if c.key in results["columns"]]
    lines = [f"## Training loaders per core: hrnet-fast vs FFCV and DALI (img/s, best of {results['rounds']})", "",
             f"{m['date']} · CPU {m['cpu']}, {m['cores']} cores · load average {m['load_average_start']} at start, "
             f"{m.get('load_average_end', '?')} at end · {results['images']} photo-like JPEGs · RandomResizedCrop "
             f"224 + flip to uint8, batch {results['batch']}, rounds of {results['images_per_round']} images, "
             f"epochs of {results.get('epoch_repeat', 1)} × the photos · "
             f"`{results['command']}`", "",
             "| photos | workers | " + " | ".join(column_label(c, versions) for c in columns)
             + " | hrnet-fast / best peer |",
             "|---|---:|" + "---:|" * len(columns) + "---:|"]
    for row in results["rows"]:
        cells = " | ".join(cell_text(row["cells"].get(c.key, {})) for c in columns)
        ratio = (f"{row['ratio']:.2f}× ({column_label(next(c for c in COLUMNS if c.key == row['best_peer']), versions)})"
                 if row["ratio"] is not None else "–")
        lines.append(f"| {SETS[row['set']][0]} | {row['workers']} | {cells} | {ratio} |")
    notes = [f"- {column_label(c, versions)}: skipped: {reason} ({SETUP_HINT})"
             for c in columns if (reason := results["skipped"].get(c.key))]
    for row in results["rows"]:
        notes += [f"- {column_label(c, versions)}, {SETS[row['set']][0]}, {plural(row['workers'], 'worker')}: "
                  f"failed: {row['cells'][c.key]['failed']}" for c in columns if "failed" in row["cells"].get(c.key, {})]
    notes += ["- Same work everywhere: JPEG bytes → RandomResizedCrop(224, scale (0.08, 1), ratio (3/4, 4/3)) + "
              "horizontal flip → uint8 batch on the CPU; workers are processes (hrnet-fast, torchvision) or "
              "threads (FFCV, DALI).",
              "- hrnet-fast and DALI (`fn.readers.webdataset`, CPU operators, `device_id=None`) read the same "
              "shards; FFCV reads a .beton written from the same folder with `RGBImageField(write_mode='jpg', "
              "jpeg_quality=90)`, i.e. every photo decoded and re-encoded by OpenCV; torchvision reads the folder.",
              f"- The ratio is hrnet-fast over the faster of FFCV and DALI (target ≥ {TARGET}); the torchvision "
              "columns are references.",
              "- Peers run one after another on a shared machine: compare within a row, and mind the load average."]
    return "\n".join(lines + ["", *notes, ""])


def extract_folder(shards: Path, out: Path) -> None:
    """The shards' train samples as an ImageFolder (out/train/<synset>/<key>.JPEG), byte for byte,
    so FFCV and torchvision read the very JPEGs `pack --resize 256` wrote; kept between runs."""
    from hrnet_fast.shardformat.manifest import read_manifest
    from hrnet_fast.shardformat.samples import IMAGE_EXT, LABEL_EXT, decode_label, group_samples
    from hrnet_fast.shardformat.tar import tar_files

    done = out / ".complete"
    if done.exists():
        return
    manifest = read_manifest(shards)
    for shard in manifest.splits["train"].shards:
        with open(shards / shard.name, "rb") as f:
            for key, fields in group_samples(tar_files(f)):
                path = out / "train" / manifest.classes[decode_label(fields[LABEL_EXT])] / f"{key}.JPEG"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(fields[IMAGE_EXT])
    done.touch()


def drop_if_stale(shards: Path, extracted: Path | None, peers_work: Path) -> None:
    """Remove cached shards that another pack version wrote (their bytes differ: version 2 added
    restart markers), and what was made from them: the repeated links and, for a resized set,
    the folder extracted from them and FFCV's .beton of that folder."""
    from pack.shards import CONTENT_VERSION

    manifest = shards / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text()).get("settings", {}).get("pack_version") == CONTENT_VERSION:
        return
    print(f"{display(shards)}: packed by another pack version, packing again", flush=True)
    for path in (shards, *shards.parent.glob(f"{shards.name}-x*"), *([extracted] if extracted else [])):
        shutil.rmtree(path, ignore_errors=True)
    for beton in peers_work.glob(f"*/{extracted.name}-q*.beton") if extracted else ():
        beton.unlink()


def prepare(args: argparse.Namespace) -> dict[str, tuple[Path, Path]]:
    """Per set: (ImageFolder root, shard directory), made once and cached in --work."""
    originals = args.work / "images"
    write_images(originals, args.images, classes=10)
    shard_size = max(1, min(100, args.images // (4 * max(args.workers))))
    pack_workers = len(os.sched_getaffinity(0))
    data = {}
    for name in args.sets:
        resize = SETS[name][1]
        shards = args.work / f"shards_{'default' if resize == 0 else f'resize{resize}'}"
        extracted = args.work / f"images_resize{resize}" if resize else None
        drop_if_stale(shards, extracted, args.work / "peers")
        pack(originals, shards, resize, shard_size, pack_workers)
        if extracted:
            extract_folder(shards, extracted)
        data[name] = (extracted or originals, shards)
    return data


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from run_all import machine

    skipped, installed = peer_status(args.peers_venv)
    skipped = {k: v for k, v in skipped.items() if k in args.only}
    for key, reason in skipped.items():
        print(f"{key}: skipped: {reason} ({SETUP_HINT})", flush=True)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "command": " ".join(["python benchmarks/loader_vs_peers.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine("cpu"), "images": args.images, "image_sizes": sorted(set(SIZES)), "batch": args.batch,
        "rounds": args.rounds, "images_per_round": args.images_per_round, "workers": args.workers,
        "epoch_repeat": args.epoch_repeat,
        "columns": args.only, "target": TARGET, "installed": installed, "skipped": skipped, "rows": []}
    data = prepare(args)
    pythons = {"main": Path(sys.executable), "peers": args.peers_venv / "bin" / "python"}
    for name in args.sets:
        folder, shards = data[name]
        for workers in args.workers:
            cells: dict[str, dict[str, Any]] = {}
            for column in (c for c in COLUMNS if c.key in args.only):
                if column.key in skipped:
                    cells[column.key] = {"skipped": skipped[column.key]}
                elif column.peer is None:
                    cells[column.key] = run_ours(shards, workers, args)
                else:
                    cells[column.key] = run_peer(pythons[column.venv], column.peer, folder, shards,
                                                 args.work / "peers", workers, args)
                cell = cells[column.key]
                print(f"{SETS[name][0]}, {plural(workers, 'worker')}, {column.key}: "
                      + (f"{cell['best']:.1f} img/s (rounds {cell['images_per_s']})" if "best" in cell
                         else f"{'skipped' if 'skipped' in cell else 'failed'}: "
                              f"{cell.get('skipped') or cell.get('failed')}"), flush=True)
            fastest, ratio = best_peer(cells)
            results["rows"].append({"set": name, "label": SETS[name][0], "workers": workers, "cells": cells,
                                    "best_peer": fastest, "ratio": None if ratio is None else round(ratio, 3)})
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    report = markdown(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loader_vs_peers.md").write_text(report)
    (args.out / "loader_vs_peers.json").write_text(json.dumps(results, indent=2))
    print(report)
    if args.json:
        print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
