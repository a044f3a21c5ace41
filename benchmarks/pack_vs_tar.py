"""How fast is `python -m pack imagenet` next to `tar -cf` of the same tree, and what does
`--resize` buy? Not a test; run it and read the table.

    python benchmarks/pack_vs_tar.py [--images 2000] [--workers N] [--tradeoff] [--json]

It generates (once, cached under benchmarks/out/) an ImageNet-like tree: photo-like baseline
JPEGs at quality 90 with ImageNet's mix of sizes (mostly 500x375 / 375x500 / 500x333, some
smaller, ~15 % large up to 1600 px), 90 % train / 10 % val. `--unique` distinct images are
generated and every file is one of them with its index in a JPEG comment, so thousands of
distinct files cost seconds to make. The page cache is warmed first, so tar and pack both read
from memory and the comparison is about the work each does per file.

Rows: `tar -cf` (wall, MB/s, images/s), and `tar -cf` + `sync` of the archive (pack fsyncs its
shards before publishing the manifest); pack pass-through (`--resize 0 --no-restart-markers`,
originals copied) with all workers and with one (target: >= 0.7x tar's images/s); pack's
default pass-through (`--resize 0`, originals restart-coded losslessly: the price of a 20 %
faster loader, reported per core, no target); pack `--resize 256` with one worker (target: >= 150
images/s per core) and all workers; CPU seconds of each run and all its processes; peak RSS of
the largest process (parent or worker) from `getrusage(RUSAGE_CHILDREN)`. Every row is the best
of `--repeat` interleaved runs. On a shared machine wall times swing with other load; CPU time
does not, so the pass-through ratio is also given as pack's images per CPU-second (start-up
excluded) times the worker count over tar's. `--tradeoff` adds, per `--resize` value: bytes per image, pack
speed, single-core PIL decode + RandomResizedCrop(224) + flip speed on the packed bytes, and
crop fidelity (PSNR of the 224 crop taken from the packed image against the same crop from the
original). `--json` prints one JSON object as the last line.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

NO_RESTART = " --no-restart-markers"  # originals copied byte for byte: what tar is compared with

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from imagegen import encode, photo_like  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
SYNSETS = [f"n0{1000000 + i}" for i in range(10)]
TRADEOFF = (0, 256, 320, 384, 448)
CROPS_PER_IMAGE = 4
# Runs a command; prints {"wall_s", "cpu_s", "peak_mb"} of it and all its descendants (CPU time
# is what a loaded machine does not distort; the peak is the largest single process's max RSS).
MEASURE = ("import json,resource,subprocess,sys,time\n"
           "t=time.perf_counter();r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,"
           "stderr=subprocess.PIPE,text=True)\n"
           "assert r.returncode==0,r.stderr[-2000:]\n"
           "u=resource.getrusage(resource.RUSAGE_CHILDREN)\n"
           "print(json.dumps({'wall_s':time.perf_counter()-t,'cpu_s':u.ru_utime+u.ru_stime,"
           "'peak_mb':u.ru_maxrss/1024}))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=4000, help="files in the tree")
    parser.add_argument("--unique", type=int, default=96, help="distinct images behind them")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--shard-size", type=int, default=100,
                        help="small enough that every worker stays busy (ImageNet: 1025 shards)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the fastest counts")
    parser.add_argument("--tradeoff", action="store_true", help="also measure --resize values")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    tree = make_tree(OUT / f"tree-{args.images}-{args.unique}", args.images, args.unique)
    files = sorted(p for p in tree.rglob("*.JPEG"))
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    for path in files:  # warm the page cache: both contenders read from memory
        path.read_bytes()
    startup_runs = [measure([sys.executable, "-c", "import pack.__main__"]) for _ in range(3)]
    startup = min(r["wall_s"] for r in startup_runs)
    startup_cpu = min(r["cpu_s"] for r in startup_runs)
    tar = ["tar", "-cf", str(OUT / "tree.tar"), "-C", str(tree), "."]
    contenders = {"tar -cf": lambda: measure(tar),
                  "tar -cf + sync (durable, like pack)": lambda: measure(
                      ["sh", "-c", f"{' '.join(tar)} && sync {OUT / 'tree.tar'}"])}
    for resize, workers, restart in [(0, args.workers, False), (0, 1, False), (0, args.workers, True),
                                     (256, 1, True), (256, args.workers, True)]:
        contenders[f"pack --resize {resize} --workers {workers}{'' if restart else NO_RESTART}"] = \
            lambda r=resize, w=workers, x=restart: pack(tree, r, w, args.shard_size, x)
    rows: dict[str, dict] = {}
    for _ in range(args.repeat):  # interleaved, so background load hits every contender alike
        for name, run in contenders.items():
            row = run()
            if name not in rows or row["wall_s"] < rows[name]["wall_s"]:
                rows[name] = row
    for row in rows.values():
        row["images_per_s"] = len(files) / row["wall_s"]
        row["mb_per_s"] = megabytes / row["wall_s"]
        row["images_per_cpu_s"] = len(files) / row["cpu_s"]
        if name.startswith("pack"):  # steady state, as on ImageNet where start-up is noise
            row["images_per_cpu_s_after_startup"] = len(files) / (row["cpu_s"] - startup_cpu)
    tar_row, passing = rows["tar -cf"], rows[f"pack --resize 0 --workers {args.workers}{NO_RESTART}"]
    restart_coded = rows[f"pack --resize 0 --workers {args.workers}"]
    result = {"images": len(files), "megabytes": megabytes, "workers": args.workers, "repeat": args.repeat,
              "python_startup_s": startup, "python_startup_cpu_s": startup_cpu, "rows": rows,
              "pass_through_vs_tar": passing["images_per_s"] / tar_row["images_per_s"],
              "pass_through_vs_tar_sync": passing["images_per_s"]
              / rows["tar -cf + sync (durable, like pack)"]["images_per_s"],
              # tar uses one core; pack's workers use `workers` cores when the machine is idle
              "pass_through_vs_tar_cpu": args.workers * passing["images_per_cpu_s_after_startup"]
              / tar_row["images_per_cpu_s"],
              "resize256_images_per_s_per_core": rows["pack --resize 256 --workers 1"]["images_per_cpu_s"],
              "restart_coded_images_per_s_per_core": restart_coded["images_per_cpu_s_after_startup"]}
    print_rows(result)
    if args.tradeoff:
        result["tradeoff"] = tradeoff(tree, args.workers, args.shard_size)
        print_tradeoff(result["tradeoff"])
    if args.json:
        print(json.dumps(result))


def make_tree(root: Path, images: int, unique: int) -> Path:
    """ImageNet-like tree (cached): `root/{train,val}/<synset>/<synset>_<i>.JPEG`."""
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    bases = [encode(photo_like(*imagenet_size(rng), rng, texture=12), quality=90) for _ in range(unique)]
    for i in range(images):
        split = "val" if i % 10 == 9 else "train"
        synset = SYNSETS[(i // 10) % len(SYNSETS)]
        path = root / split / synset / f"{synset}_{i}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        base = bases[i % unique]
        comment = f"file {i}".encode()
        path.write_bytes(base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:])
    (root / ".complete").touch()
    return root


def imagenet_size(rng: np.random.Generator) -> tuple[int, int]:
    """Mostly Flickr "medium" (500 px long side), some smaller, ~15 % large."""
    kind = rng.random()
    if kind < 0.70:
        long, short = 500, int(rng.choice([375, 333, 375, 281]))
    elif kind < 0.85:
        long = int(rng.integers(250, 500))
        short = int(long * rng.uniform(0.6, 0.9))
    else:
        long = int(rng.integers(800, 1601))
        short = int(long * rng.uniform(0.66, 0.8))
    return (long, short) if rng.random() < 0.75 else (short, long)


def measure(command: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def pack(tree: Path, resize: int, workers: int, shard_size: int, restart: bool = True) -> dict:
    out = OUT / f"shards-r{resize}-w{workers}{'' if restart else '-copy'}"
    shutil.rmtree(out, ignore_errors=True)  # a fresh pack: nothing to reuse
    row = measure([sys.executable, "-m", "pack", "imagenet", str(tree), "--out", str(out),
                   "--resize", str(resize), "--workers", str(workers), "--shard-size", str(shard_size),
                   *([] if restart else [NO_RESTART.strip()])])
    manifest = json.loads((out / "manifest.json").read_text())
    shard_bytes = sum(s["bytes"] for split in manifest["splits"].values() for s in split["shards"])
    samples = sum(split["num_samples"] for split in manifest["splits"].values())
    row["bytes_per_image"] = shard_bytes / samples
    row["shards"] = str(out)
    return row


def tradeoff(tree: Path, workers: int, shard_size: int, sample: int = 400) -> dict:
    """Per --resize value: bytes/image, pack speed, decode+RRC speed per core, crop PSNR."""
    from torchvision import transforms  # only the trade-off needs it

    crop = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()])
    table, encoded = {}, {}
    for resize in TRADEOFF:
        row = table[resize] = pack(tree, resize, workers, shard_size)
        row["images_per_cpu_s"] = sum(1 for _ in tree.rglob("*.JPEG")) / row["cpu_s"]
        encoded[resize] = read_samples(Path(row.pop("shards")), sample)
        row["crop_psnr_db"] = crop_psnr(tree, encoded[resize])
        row["decode_rrc_images_per_s"] = 0.0
    for _ in range(5):  # round-robin, best of 5: background load hits every value alike
        for resize, row in table.items():
            row["decode_rrc_images_per_s"] = max(row["decode_rrc_images_per_s"],
                                                 decode_rate(encoded[resize], crop))
    return table


def decode_rate(encoded: dict[str, bytes], crop) -> float:
    """Images per CPU-second (this process only: one core) for PIL decode + RRC(224) + flip."""
    start = time.process_time()
    for data in encoded.values():
        crop(Image.open(io.BytesIO(data)).convert("RGB"))
    return len(encoded) / (time.process_time() - start)


def read_samples(shards: Path, limit: int) -> dict[str, bytes]:
    """key -> jpg bytes of the first `limit` train samples (shuffled order, so a fair mix)."""
    found: dict[str, bytes] = {}
    for path in sorted(shards.glob("train-*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    found[member.name[:-4]] = tar.extractfile(member).read()
                    if len(found) == limit:
                        return found
    return found


def crop_psnr(tree: Path, encoded: dict[str, bytes]) -> float:
    """PSNR of 224 px RandomResizedCrop-style crops: packed image vs the original file."""
    import torch
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)  # the same crops for every --resize value
    squared_error, count = 0.0, 0
    for key, data in list(encoded.items())[:100]:
        original = Image.open(tree / "train" / key.rsplit("_", 1)[0] / f"{key}.JPEG").convert("RGB")
        packed = Image.open(io.BytesIO(data)).convert("RGB")
        sx, sy = packed.width / original.width, packed.height / original.height
        for _ in range(CROPS_PER_IMAGE):
            top, left, h, w = RandomResizedCrop.get_params(original, (0.08, 1.0), (3 / 4, 4 / 3))
            reference = original.resize((224, 224), Image.Resampling.BILINEAR,
                                        box=(left, top, left + w, top + h))
            test = packed.resize((224, 224), Image.Resampling.BILINEAR,
                                 box=(left * sx, top * sy, (left + w) * sx, (top + h) * sy))
            diff = np.asarray(reference, np.float32) - np.asarray(test, np.float32)
            squared_error += float(np.mean(diff ** 2))
            count += 1
    mse = squared_error / count
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def print_rows(result: dict) -> None:
    print(f"{result['images']} images, {result['megabytes']:.0f} MB, {result['workers']} workers, "
          f"best of {result['repeat']} runs; python start-up {result['python_startup_s']:.2f} s "
          "(included below); pack's wall includes fsync of its shards, tar's does not sync")
    print(f"{'run':56} {'wall s':>7} {'images/s':>9} {'MB/s':>7} {'CPU s':>6} {'img/CPU-s':>10} "
          f"{'peak MB':>8}")
    for name, row in result["rows"].items():
        print(f"{name:56} {row['wall_s']:7.2f} {row['images_per_s']:9.0f} {row['mb_per_s']:7.0f} "
              f"{row['cpu_s']:6.2f} {row['images_per_cpu_s']:10.0f} {row['peak_mb']:8.0f}")
    print(f"pack start-up costs {result['python_startup_cpu_s']:.2f} CPU-s; pass-through after it: "
          f"{result['rows'][f'pack --resize 0 --workers 1{NO_RESTART}']['images_per_cpu_s_after_startup']:.0f} "
          f"images per CPU-second copied, {result['restart_coded_images_per_s_per_core']:.0f} restart-coded "
          "(the default)")
    print(f"pass-through vs tar: {result['pass_through_vs_tar']:.2f}x by wall time "
          f"({result['pass_through_vs_tar_sync']:.2f}x vs tar + sync), "
          f"{result['pass_through_vs_tar_cpu']:.2f}x by CPU time on {result['workers']} cores "
          f"(target >= 0.7); --resize 256: {result['resize256_images_per_s_per_core']:.0f} images per "
          "CPU-second (target >= 150 per core)")


def print_tradeoff(table: dict) -> None:
    print(f"\n{'--resize':>8} {'KB/image':>9} {'pack img/CPU-s':>15} {'decode+RRC img/CPU-s':>21} "
          f"{'crop PSNR dB':>13}")
    for resize, row in table.items():
        print(f"{resize:>8} {row['bytes_per_image'] / 1024:9.1f} {row['images_per_cpu_s']:15.0f} "
              f"{row['decode_rrc_images_per_s']:21.0f} {row['crop_psnr_db']:13.1f}")


if __name__ == "__main__":
    main()
