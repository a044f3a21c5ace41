"""`python -m pack imagenet` end to end: scan, plan, build shards in parallel, assemble the manifest.

The manifest is not written by `pack_imagenet`: the caller prints the summary first and calls
`publish` only when the pack succeeded (no empty split; nothing rejected under `--strict`), so
a `manifest.json` in a directory always means "complete and usable". Any manifest from an
earlier run is removed before the first shard is touched, and stale temp files and shards
beyond the new plan are cleaned up, so an interrupted directory is never mistaken for a
finished one. One pack at a time per output folder.

Why `--resize 384` is the default: most decode time goes to the few large images, so capping
the short side at 384 roughly doubles decode+crop throughput per core and halves the bytes, while
only images larger than ~512x384 change and 224-px training crops stay within ~40 dB PSNR of the
original (close to FFCV's published ImageNet setting, max side 500). 256 is faster still but
softens small crops (~33 dB) and would put the reference accuracy at risk: opt in with
`--resize 256`; `--resize 0` keeps every original's pixels. The measured trade-off table is
in docs/performance.md (`benchmarks/pack_vs_tar.py --tradeoff`).

Why restart markers by default (`--no-restart-markers` turns them off): the loader decodes only
the restart intervals under a crop, 20 % less time per training image (pack/images.py,
RESTART_EVERY_MCUS); originals are restart-coded losslessly, so their pixels stay the same.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import PIL

from hrnet_fast import log as logs
from hrnet_fast.errors import UserError
from hrnet_fast.shardformat.index import index_name
from hrnet_fast.shardformat.manifest import MANIFEST, TIMM_INFO, WIDS_SUFFIX, Manifest, SplitInfo, write_manifest
from pack.images import PASSED, REJECTED, REPAIRED, RESIZED, RESTART_EVERY_MCUS, restart_transcoder
from pack.labels import read_synset_names
from pack.parallel import run_jobs
from pack.scan import Scan, scan_imagenet
from pack.shards import CONTENT_VERSION, ShardResult, ensure_shard, shard_plan, shard_tasks, sidecar_name, sync_files

log = logs.get(__name__)

SHARD_NAME = re.compile(r"^(train|val)-(\d{6})\.tar$")
TEMP_NAME = re.compile(r"^\.((train|val)-\d{6}\.tar\.tmp-\d+|.+\.(json|idx)\..+\.tmp)$")
DEFAULT_RESIZE = 384  # why: see the module docstring


@dataclass(frozen=True)
class PackOptions:
    src: Path
    out: Path
    splits: list[str]
    shard_size: int = 1250
    resize: int = DEFAULT_RESIZE
    quality: int = 90
    restart_markers: bool = True  # restart-code what is stored (pack/images.py, RESTART_EVERY_MCUS)
    workers: int = 1
    seed: int = 0
    per_class_limit: int | None = None
    val_labels: Path | None = None
    val_synsets: Path | None = None
    synset_names: Path | None = None


@dataclass
class PackRun:
    manifest: Manifest              # per-split counts are in manifest.stats
    reused: dict[str, int]          # split -> shards taken over from an earlier run

    def problem(self, strict: bool) -> str | None:
        """Why this pack must not be published (exit != 0), or None."""
        empty = [s for s, split in self.manifest.splits.items() if split.num_samples == 0]
        if empty:
            return (f"split {empty[0]} has no usable images (all "
                    f"{self.manifest.stats[empty[0]][REJECTED]} rejected)")
        rejected = sum(len(v) for v in self.manifest.rejected.values())
        if strict and rejected:
            first = next(r for v in self.manifest.rejected.values() for r in v)
            return (f"--strict: {rejected} file(s) rejected, e.g. {first['file']} ({first['reason']}); "
                    "fix or remove them, or drop --strict")
        return None


def restart_interval(options: PackOptions) -> int:
    """MCUs per restart interval of the stored JPEGs; 0 with --no-restart-markers."""
    return RESTART_EVERY_MCUS if options.restart_markers else 0


def pack_imagenet(options: PackOptions) -> PackRun:
    """Build (or reuse) every shard of the requested splits; return the manifest to publish."""
    if not options.src.is_dir():
        raise UserError(f"ImageNet source {options.src} not found: pass SRC, set $IMAGENET_DIR, or put "
                        "the data in ./ImageNet2012 (with train/<synset>/ and val/ inside)")
    for split in options.splits:
        if options.out.resolve().is_relative_to((options.src / split).resolve()):
            raise UserError(f"--out {options.out} is inside {options.src / split}: its shards would be "
                            "scanned as images; write them elsewhere")
    if options.restart_markers and restart_transcoder() is None:
        log.warning("pack: hrnet_fast._jpeg is not built (no libjpeg headers at `make setup`): originals are "
                    "stored byte for byte, without restart markers, and decode about 20 % slower in the loader")
    scan = scan_imagenet(options.src, options.splits, options.per_class_limit, options.val_labels,
                         options.val_synsets)
    class_names = _class_names(scan.classes, options.synset_names)
    plans = {name: shard_plan(split, options.shard_size, options.seed) for name, split in scan.splits.items()}
    _prepare_out(options.out, {name: len(plan) for name, plan in plans.items()})
    jobs = (task for name, split in scan.splits.items()
            for task in shard_tasks(split, plans[name], options.src, options.out, options.resize,
                                    options.quality, restart_interval(options)))
    total = sum(len(split.files) for split in scan.splits.values())
    results = {r.info.name: r for r in run_jobs(ensure_shard, jobs, options.workers, total, "pack")}
    return _assemble(scan, options, class_names, results)


def publish(out: Path, manifest: Manifest) -> None:
    """Make every shard and index durable, then write the metadata, `manifest.json` last."""
    sync_files([out / name for split in manifest.splits.values() for shard in split.shards
                for name in (shard.name, shard.index) if name])
    write_manifest(out, manifest)


def _prepare_out(out: Path, shard_counts: dict[str, int]) -> None:
    """Unpublish the old manifest, drop leftover temp files and shards (with their index and
    sidecar) the new plan lacks."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the output folder {out}: {exc.strerror}") from None
    for name in (MANIFEST, TIMM_INFO):
        (out / name).unlink(missing_ok=True)
    for entry in os.scandir(out):
        shard = SHARD_NAME.match(entry.name)
        stale = shard and shard[1] in shard_counts and int(shard[2]) >= shard_counts[shard[1]]
        if TEMP_NAME.match(entry.name) or entry.name.endswith(WIDS_SUFFIX):
            os.unlink(entry.path)
        elif stale:
            os.unlink(entry.path)
            (out / index_name(entry.name)).unlink(missing_ok=True)
            (out / sidecar_name(entry.name)).unlink(missing_ok=True)


def _class_names(classes: list[str], path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    names = read_synset_names(path)
    found = {c: names[c] for c in classes if c in names}
    if not found:
        raise UserError(f"{path} names none of the {len(classes)} classes (e.g. {classes[0]}); "
                        "pass the synset mapping of this dataset")
    return found


def _assemble(scan: Scan, options: PackOptions, class_names: dict[str, str],
              results: dict[str, ShardResult]) -> PackRun:
    manifest = Manifest(classes=scan.classes, splits={}, settings=_settings(options),
                        class_names=class_names)
    reused = {}
    for split_name, split in scan.splits.items():
        ordered = [results[n] for n in sorted(r for r in results if r.startswith(f"{split_name}-"))]
        shards = [r.info for r in ordered]
        manifest.splits[split_name] = SplitInfo(sum(s.num_samples for s in shards), shards)
        manifest.repaired[split_name] = sorted((rec for r in ordered for rec in r.repaired),
                                               key=lambda rec: rec["file"])
        manifest.rejected[split_name] = sorted((rec for r in ordered for rec in r.rejected),
                                               key=lambda rec: rec["file"])
        manifest.skipped[split_name] = split.skipped
        manifest.renamed[split_name] = split.renamed
        counts = {k: sum(r.counts.get(k, 0) for r in ordered) for k in (PASSED, RESIZED, REPAIRED, REJECTED)}
        counts["skipped"] = len(split.skipped)
        manifest.stats[split_name] = {"files": len(split.files),
                                      "packed": manifest.splits[split_name].num_samples, **counts}
        reused[split_name] = sum(r.reused for r in ordered)
    return PackRun(manifest, reused)


def _settings(options: PackOptions) -> dict:
    restart = restart_interval(options)
    return {"shard_size": options.shard_size, "resize": options.resize, "quality": options.quality,
            "restart_interval": restart, "restart_transcoder": restart_transcoder(restart),
            "seed": options.seed, "per_class_limit": options.per_class_limit,
            "source": str(options.src.resolve()), "splits": list(options.splits),
            "val_labels": str(options.val_labels) if options.val_labels else None,
            "val_synsets": str(options.val_synsets) if options.val_synsets else None,
            "pack_version": CONTENT_VERSION, "pillow": PIL.__version__}
