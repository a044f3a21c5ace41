"""`python -m pack`: pack ImageNet folders into verified WebDataset shards, and verify them."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from hrnet_fast import log as logs
from hrnet_fast.clickutil import UserErrorGroup
from hrnet_fast.errors import UserError
from hrnet_fast.shardformat.manifest import Manifest
from pack.parallel import default_workers
from pack.pipeline import DEFAULT_RESIZE, PackOptions, pack_imagenet, publish
from pack.verify import verify_directory

log = logs.get(__name__)

SPLITS = ("train", "val")
COLUMNS = ("files", "packed", "passed", "resized", "repaired", "rejected", "skipped")
MAX_LISTED = 20


@click.group(cls=UserErrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Pack ImageNet into WebDataset tar shards (`imagenet`) and check them (`verify`)."""


@cli.command()
@click.argument("src", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("shards"), show_default=True,
              help="Output folder for the shards, manifest.json and _info.json.")
@click.option("--splits", default="train,val", show_default=True, help="Comma-separated splits to pack.")
@click.option("--shard-size", type=click.IntRange(min=1), default=1250, show_default=True,
              help="Input files per shard (rejected files make a shard slightly smaller).")
@click.option("--resize", type=click.IntRange(min=0), default=DEFAULT_RESIZE, show_default=True,
              metavar="SHORT",
              help="Pre-resize so the shorter side is at most SHORT pixels (never upscales): 384 halves "
                   "bytes and doubles decode speed, only images over ~512x384 change; 256 is faster "
                   "but softer; 0 keeps originals.")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True,
              help="JPEG quality for re-encoded (repaired or resized) images.")
@click.option("--restart-markers/--no-restart-markers", default=True, show_default=True,
              help="Store JPEGs with a restart marker after every 16x16 block (originals losslessly: same "
                   "pixels, metadata kept) so the loader decodes only what a crop covers, ~20 % faster; "
                   "off stores baseline originals byte for byte.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes [default: all cores].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train shuffle.")
@click.option("--per-class-limit", type=click.IntRange(min=1), default=None,
              help="Pack at most N files per class in every split (the first N by name), for quick subsets.")
@click.option("--val-labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Labels for a flat val folder: LOC_val_solution.csv, or the devkit's "
                   "ILSVRC2012_validation_ground_truth.txt with --val-synsets.")
@click.option("--val-synsets", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Synsets in ILSVRC id order, one per line (synset_words.txt style is fine).")
@click.option("--synset-names", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="LOC_synset_mapping.txt ('n01440764 tench, Tinca tinca') for manifest class_names.")
@click.option("--strict", is_flag=True, help="Fail (exit 1, no manifest) if any file is rejected.")
def imagenet(src: Path | None, out: Path, splits: str, shard_size: int, resize: int, quality: int,
             restart_markers: bool, workers: int | None, seed: int, per_class_limit: int | None, val_labels: Path | None,
             val_synsets: Path | None, synset_names: Path | None, strict: bool) -> None:
    """Pack SRC/train/<synset>/* and SRC/val/<synset>/* (or a flat val + --val-labels) into shards.

    SRC defaults to $IMAGENET_DIR, else ./ImageNet2012. Class indices are the sorted synset
    folders of SRC/train (torchvision ImageFolder order), also when only val is packed; without
    a train folder they come from val. Baseline RGB JPEGs no larger than --resize keep their
    pixels (restart-coded losslessly, or byte for byte with --no-restart-markers); CMYK,
    grayscale, progressive and non-JPEG images are re-encoded and listed as
    repaired; broken files are rejected and listed; dotfiles and non-image files are skipped.
    Re-running the same command after a crash rebuilds only missing or damaged shards.
    """
    src = src or Path(os.environ.get("IMAGENET_DIR") or "ImageNet2012")
    options = PackOptions(src=src, out=out, splits=_parse_splits(splits), shard_size=shard_size,
                          resize=resize, quality=quality, restart_markers=restart_markers,
                          workers=workers or default_workers(),
                          seed=seed, per_class_limit=per_class_limit, val_labels=val_labels,
                          val_synsets=val_synsets, synset_names=synset_names)
    run = pack_imagenet(options)
    log.info(summary_table(run.manifest, run.reused))
    _list_rejected(run.manifest)
    problem = run.problem(strict)
    if problem:
        raise UserError(problem)
    publish(out, run.manifest)
    log.info(f"wrote {out / 'manifest.json'}")


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--quick", is_flag=True, help="Check sizes, sha256 and tar structure; skip decoding images.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes [default: all cores].")
def verify(directory: Path, quick: bool, workers: int | None) -> None:
    """Re-hash every shard of DIRECTORY against its manifest, count samples, decode every image.

    Exits non-zero naming the first bad shard and what is wrong with it.
    """
    manifest = verify_directory(directory, workers or default_workers(), quick)
    parts = [f"{name} {len(s.shards)} shards {s.num_samples} samples" for name, s in manifest.splits.items()]
    log.info(f"OK {directory}: " + ", ".join(parts) + (" (not decoded: --quick)" if quick else ""))


def summary_table(manifest: Manifest, reused: dict[str, int]) -> str:
    """Per split: files found, packed (= passed + resized + repaired), rejected, skipped, shards."""
    header = ["split", *COLUMNS, "shards", "reused"]
    rows = [[name, *(str(manifest.stats[name][c]) for c in COLUMNS), str(len(split.shards)),
             str(reused.get(name, 0))] for name, split in manifest.splits.items()]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))) for row in [header, *rows])


def _list_rejected(manifest: Manifest) -> None:
    rejected = [record for records in manifest.rejected.values() for record in records]
    for record in rejected[:MAX_LISTED]:
        log.warning(f"rejected {record['file']}: {record['reason']}")
    if len(rejected) > MAX_LISTED:
        log.warning(f"... and {len(rejected) - MAX_LISTED} more (all in manifest.json 'rejected')")


def _parse_splits(text: str) -> list[str]:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    if not splits or any(s not in SPLITS for s in splits) or len(set(splits)) != len(splits):
        raise UserError(f"--splits {text!r}: use train, val or train,val")
    return splits


if __name__ == "__main__":
    logs.configure()
    sys.exit(cli(prog_name="python -m pack"))
