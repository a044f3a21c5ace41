"""Read the label files ImageNet ships with: val ground truth and synset lists.

The official val folder is flat (`val/ILSVRC2012_val_00000001.JPEG` …), so its labels come from
a side file: Kaggle's `LOC_val_solution.csv` (`ImageId,PredictionString`, the prediction string
starts with the synset) or the devkit's `ILSVRC2012_validation_ground_truth.txt` (one 1-based
ILSVRC id per line, in sorted file order) together with a list mapping ILSVRC ids to synsets.
"""
from __future__ import annotations

import csv
from pathlib import Path

from hrnet_fast.errors import UserError


def read_synset_names(path: Path) -> dict[str, str]:
    """`LOC_synset_mapping.txt` / `synset_words.txt`: "n01440764 tench, Tinca tinca" per line
    (any class folder name works in place of the synset)."""
    names = {}
    for line in _lines(path):
        folder, _, name = line.partition(" ")
        names[folder] = name.strip()
    return names


def read_synset_list(path: Path) -> list[str]:
    """One synset per line in ILSVRC id order (extra words after the synset are ignored)."""
    return [line.split()[0] for line in _lines(path)]


def val_synsets_for(files: list[str], labels: Path, synsets: Path | None) -> list[str | None]:
    """The synset of each flat val file (`files` sorted, relative paths); None where unlabeled."""
    lines = _lines(labels)
    if lines and lines[0].replace(" ", "").lower().startswith("imageid,"):
        if synsets is not None:
            raise UserError(f"{labels} already names synsets: drop --val-synsets")
        by_stem = _read_solution_csv(labels)
        return [by_stem.get(_stem(f)) for f in files]
    if synsets is None:
        raise UserError(f"{labels} is not a LOC_val_solution.csv; for the devkit's "
                        "ILSVRC2012_validation_ground_truth.txt also pass --val-synsets LIST "
                        "(one synset per line in ILSVRC id order)")
    ids = _read_ids(labels, lines)
    order = read_synset_list(synsets)
    if len(ids) != len(files):
        raise UserError(f"{labels} has {len(ids)} labels but the val folder has {len(files)} "
                        "images; the devkit file needs the complete, unmodified val folder")
    if max(ids, default=1) > len(order):
        raise UserError(f"{labels} uses ILSVRC id {max(ids)} but {synsets} lists only "
                        f"{len(order)} synsets")
    return [order[i - 1] for i in ids]


def _read_solution_csv(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        rows = csv.reader(f)
        next(rows)
        by_stem = {}
        for number, row in enumerate(rows, 2):
            if len(row) < 2 or not row[1].split():
                raise UserError(f"{path}:{number}: expected 'ImageId,PredictionString', got {row!r}")
            by_stem[row[0].strip()] = row[1].split()[0]
    return by_stem


def _read_ids(path: Path, lines: list[str]) -> list[int]:
    try:
        ids = [int(line) for line in lines]
    except ValueError:
        raise UserError(f"{path} is neither a LOC_val_solution.csv nor a ground-truth file "
                        "with one ILSVRC id per line") from None
    if min(ids, default=1) < 1:
        raise UserError(f"{path}: ILSVRC ids start at 1, found {min(ids)}")
    return ids


def _lines(path: Path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _stem(relpath: str) -> str:
    name = relpath.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name
