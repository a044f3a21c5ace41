"""Walk an ImageNet source tree once: class index, every split's files in sorted order, keys.

Class indices are the sorted synset folder names of `SRC/train` (what torchvision's ImageFolder
assigns, so official checkpoints' labels match); val uses the same mapping, and a val synset
that train lacks is an error. The train folder defines the classes whenever it exists, even
when only val is packed, so a val-only pack indexes classes exactly like a full one; without a
train folder the classes come from val (its class folders, or the synsets its label file names).

The walk is one `os.scandir` per folder with no `stat` calls and holds only path strings, so
it is linear in the number of files and ImageNet's 1.28 M scan in seconds (docs/performance.md).
Hidden entries (dotfiles, `.ipynb_checkpoints`) and files whose extension is not an image's
are skipped and recorded; everything else is handed to the packer, which repairs or rejects.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrnet_fast.errors import UserError
from hrnet_fast.shardformat.samples import key_for_file
from pack.labels import read_synset_list, val_synsets_for

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif",
                              ".tif", ".tiff", ".webp"})
MAX_KEY_BYTES = 90  # + ".jpg" stays inside the 100-byte ustar name field


@dataclass
class SplitFiles:
    """One split's inputs: what to pack (sorted), with which label and key; what was skipped."""
    name: str
    files: list[str]                 # paths relative to the source root, "/"-separated
    labels: np.ndarray               # int32 class index per file
    key_overrides: dict[int, str] = field(default_factory=dict)  # file index -> key, if not derived
    skipped: list[dict[str, str]] = field(default_factory=list)
    renamed: list[dict[str, str]] = field(default_factory=list)

    def key(self, index: int) -> str:
        return self.key_overrides.get(index) or key_for_file(self.files[index])


@dataclass
class Scan:
    root: Path
    classes: list[str]
    splits: dict[str, SplitFiles]


def scan_imagenet(root: Path, splits: list[str], per_class_limit: int | None = None,
                  val_labels: Path | None = None, val_synsets: Path | None = None) -> Scan:
    """Find every split's inputs under `root` (`train/<synset>/…`, `val/<synset>/…` or flat val)."""
    root = Path(root)
    for split in splits:
        if not (root / split).is_dir():
            others = ",".join(s for s in splits if s != split)
            hint = f"; pass --splits {others} to pack without it" if others else ""
            raise UserError(f"{root / split} not found (expected {root}/{split}/<synset>/<images>){hint}")
    if val_synsets is not None and val_labels is None:
        raise UserError("--val-synsets only applies together with --val-labels GROUND_TRUTH.txt")
    classes = _train_classes(root)
    result = {}
    for split in splits:
        if split == "val" and not _class_dirs(root / split)[0]:
            result[split], classes = _flat_val(root, classes, val_labels, val_synsets, per_class_limit)
        elif split == "val" and val_labels is not None:
            raise UserError(f"{root / split} already has class folders: drop --val-labels")
        else:
            classes = classes or _class_dirs(root / split)[0]
            result[split] = _by_folder(root, split, classes, per_class_limit)
    for found in result.values():
        if not found.files:
            raise UserError(f"{root / found.name} has no images ({len(found.skipped)} other entries "
                            "skipped); check SRC or leave the split out with --splits")
    _assign_keys(result.values())
    return Scan(root=root, classes=classes or [], splits=result)


def _train_classes(root: Path) -> list[str] | None:
    if not (root / "train").is_dir():
        return None
    classes = _class_dirs(root / "train")[0]
    if not classes:
        raise UserError(f"{root / 'train'} has no class folders (expected train/<synset>/<images>)")
    return classes


def _class_dirs(folder: Path) -> tuple[list[str], list[os.DirEntry]]:
    """Sorted non-hidden sub-folder names, and the other (file) entries."""
    with os.scandir(folder) as listing:
        entries = list(listing)
    dirs = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    others = sorted((e for e in entries if not (e.is_dir() and not e.name.startswith("."))),
                    key=lambda e: e.name)
    return dirs, others


def _by_folder(root: Path, split: str, classes: list[str], limit: int | None) -> SplitFiles:
    folders, loose = _class_dirs(root / split)
    index = {synset: i for i, synset in enumerate(classes)}
    unknown = [f for f in folders if f not in index]
    if unknown:
        raise UserError(f"{root / split / unknown[0]}: synset {unknown[0]} is not a class folder of "
                        f"{root / 'train'} ({len(unknown)} such); pack from a complete train folder")
    skipped: list[dict[str, str]] = []
    for entry in loose:
        reason = "hidden file" if entry.name.startswith(".") else "outside a class folder"
        skipped.append({"file": f"{split}/{entry.name}", "reason": reason})
    files: list[str] = []
    counts: list[int] = []
    for synset in folders:
        found = list(_walk(root, f"{split}/{synset}", skipped))
        found = found[:limit] if limit else found
        files += found
        counts.append(len(found))
    labels = np.repeat(np.asarray([index[s] for s in folders], np.int32), counts)
    return SplitFiles(split, files, labels, skipped=skipped)


def _walk(root: Path, rel: str, skipped: list[dict[str, str]]) -> Iterator[str]:
    """Image files below `root/rel` in sorted order (recursing like ImageFolder); record the rest."""
    with os.scandir(root / rel) as listing:
        entries = sorted(listing, key=lambda e: e.name)
    for entry in entries:
        path = f"{rel}/{entry.name}"
        if entry.name.startswith("."):
            skipped.append({"file": path, "reason": "hidden " + ("folder" if entry.is_dir() else "file")})
        elif entry.is_dir():
            yield from _walk(root, path, skipped)
        elif not entry.is_file():
            skipped.append({"file": path, "reason": "not a regular file"})
        elif os.path.splitext(entry.name)[1].lower() not in IMAGE_EXTENSIONS:
            ext = os.path.splitext(entry.name)[1]
            skipped.append({"file": path, "reason": f"not an image ({ext or 'no extension'})"})
        else:
            yield path


def _flat_val(root: Path, classes: list[str] | None, val_labels: Path | None,
              val_synsets: Path | None, limit: int | None) -> tuple[SplitFiles, list[str] | None]:
    """The official flat val folder, labeled from --val-labels; also the classes if train has none."""
    skipped: list[dict[str, str]] = []
    files = list(_walk(root, "val", skipped))
    if not files:
        return SplitFiles("val", [], np.zeros(0, np.int32), skipped=skipped), classes
    if val_labels is None:
        raise UserError(f"{root / 'val'} holds images without class folders (the official layout): "
                        "pass --val-labels LOC_val_solution.csv, or --val-labels "
                        "ILSVRC2012_validation_ground_truth.txt --val-synsets LIST")
    synsets = val_synsets_for(files, val_labels, val_synsets)
    if classes is None:
        classes = sorted(set(read_synset_list(val_synsets)) if val_synsets else {s for s in synsets if s})
    index = {synset: i for i, synset in enumerate(classes)}
    kept: list[str] = []
    labels: list[int] = []
    per_class: dict[int, int] = {}
    for path, synset in zip(files, synsets):
        if synset is None:
            skipped.append({"file": path, "reason": f"no label in {Path(val_labels).name}"})
            continue
        if synset not in index:
            raise UserError(f"{val_labels}: {path} is labeled {synset}, which is not a class folder "
                            f"of {root / 'train'}")
        label = index[synset]
        per_class[label] = per_class.get(label, 0) + 1
        if limit and per_class[label] > limit:
            continue
        kept.append(path)
        labels.append(label)
    return SplitFiles("val", kept, np.asarray(labels, np.int32), skipped=skipped), classes


def _assign_keys(splits: Iterable[SplitFiles]) -> None:
    """Keys unique within each split; a colliding or over-long stem gets a deterministic new key."""
    for split in splits:
        seen: dict[str, int] = {}
        for i, path in enumerate(split.files):
            derived = key_for_file(path)
            base = derived if len(derived.encode("utf-8")) <= MAX_KEY_BYTES else _shortened(derived)
            key, n = base, 1
            while key in seen:
                key, n = f"{base}_{n}", n + 1
            if key != derived:
                split.key_overrides[i] = key
                reason = (f"stem {derived} is taken by {split.files[seen[base]]}" if key != base
                          else "stem too long for a tar member name")
                split.renamed.append({"file": path, "key": key, "reason": reason})
            seen[key] = i


def _shortened(key: str) -> str:
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
    head = key.encode("utf-8")[:MAX_KEY_BYTES - 24].decode("utf-8", "ignore")
    return f"{head}_{digest}"
