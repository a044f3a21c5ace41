"""First and second open of a large foreign webdataset: the sample-index scan and its cache.

    python benchmarks/index_first_open.py [--shards 1000] [--samples 1281] [--sample-bytes 110000] [--json]

Why: shards written by other tools have no `.idx`; the loader scans each tar's headers once on
first open (hrnet_fast/data/indexes.py) and caches the index beside it. With ImageNet in 1000
shards that is 1.28 M samples, 2.56 M tar headers: this says what the first `train` start costs
and that the second one reads the cache. The tars are written sparse (a header, then a hole where
the image bytes would be), so they have ImageNet's file sizes and member layout without gigabytes
on disk; the scan seeks over data, so the holes change nothing it does. Figures are with the
tars in the page cache (just written): a cold disk adds one read per header where the OS does not
read ahead.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hrnet_fast.data import open_source  # noqa: E402


def write_sparse_shard(path: Path, samples: int, sample_bytes: int) -> None:
    """A webdataset tar of `samples` (key.jpg of `sample_bytes` as a hole, key.cls) members."""
    with open(path, "wb") as f:
        for i in range(samples):
            key = f"{path.stem}_{i:06d}"
            for ext, size in (("jpg", sample_bytes), ("cls", 3)):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = size
                f.write(info.tobuf(tarfile.USTAR_FORMAT))
                f.seek(-(-size // 512) * 512, 1)
        f.seek(1024, 1)  # the two zero blocks that end a tar
        f.truncate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1281, help="samples per shard (ImageNet: 1281167 / 1000)")
    parser.add_argument("--sample-bytes", type=int, default=110_000, help="image bytes per sample (ImageNet ~110 KB)")
    parser.add_argument("--work", type=Path, help="folder for the tars [a temporary one, removed after]")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="index-first-open-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for n in range(args.shards):
            write_sparse_shard(work / f"part-{n:06d}.tar", args.samples, args.sample_bytes)
        url = f"{work}/part-{{000000..{args.shards - 1:06d}}}.tar"
        times = []
        for _ in range(2):
            start = time.perf_counter()
            source = open_source(url)
            times.append(time.perf_counter() - start)
        total = sum(source.shard_sizes)
        assert source.indexed and total == args.shards * args.samples, (source.indexed, total)
        tar_bytes = sum(p.stat().st_size for p in work.glob("*.tar"))
        result = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
                  "shards": args.shards, "samples": total, "tar_gb": round(tar_bytes / 1e9, 1),
                  "first_open_s": round(times[0], 2), "second_open_s": round(times[1], 2),
                  "headers_per_s": round(2 * total / times[0])}
        print(f"{args.shards} foreign shards, {total} samples ({result['tar_gb']} GB of tar): first open "
              f"{times[0]:.2f} s (indexes scanned and cached, {result['headers_per_s']} headers/s), "
              f"second open {times[1]:.2f} s (cached)")
        if args.json:
            print(json.dumps(result))
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
