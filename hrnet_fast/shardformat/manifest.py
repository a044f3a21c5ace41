"""The shard directory's metadata: `manifest.json` (ours), `_info.json` (timm's wds schema) and
`SPLIT.wids.json` (webdataset's `wids` shard list, so `wids.ShardListDataset` opens a split).

Writes are atomic (temp file + fsync + rename), and `manifest.json` is written last, so a
directory with a manifest is always complete. A shard's entry names its sample index
(`index`, `index_sha256`: see index.py); both fields are optional, so manifests written before
indexes existed still read (their readers build the index on first open).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from hrnet_fast.atomic import write_json_atomic
from hrnet_fast.errors import UserError

FORMAT = "hrnet-fast-shards"
VERSION = 1
MANIFEST = "manifest.json"
TIMM_INFO = "_info.json"
WIDS_SUFFIX = ".wids.json"


class ManifestError(UserError):
    """A shard directory without a readable manifest; the message says what to do."""


@dataclass
class ShardInfo:
    name: str
    num_samples: int
    bytes: int
    sha256: str
    index: str | None = None  # the sample index file beside the shard (absent in older manifests)
    index_sha256: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardInfo:
        """Known fields only: a later version may add some, as this one added `index`."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class SplitInfo:
    num_samples: int = 0
    shards: list[ShardInfo] = field(default_factory=list)


@dataclass
class Manifest:
    classes: list[str]
    splits: dict[str, SplitInfo]
    settings: dict[str, Any] = field(default_factory=dict)
    class_names: dict[str, str] = field(default_factory=dict)
    # Per split: [{"file": relative path, "reason": why}] — every input not packed as-is.
    rejected: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    repaired: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    skipped: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    # Per split: [{"file", "key", "reason"}] — inputs whose key is not their dot-free stem.
    renamed: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    # Per split: {"files", "packed", "passed", "resized", "repaired", "rejected", "skipped"} counts.
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        splits = {
            name: SplitInfo(num_samples=int(s["num_samples"]),
                            shards=[ShardInfo.from_json(shard) for shard in s["shards"]])
            for name, s in data["splits"].items()
        }
        fields = {k: data[k] for k in ("settings", "class_names", "rejected", "repaired", "skipped",
                                       "renamed", "stats") if k in data}
        return cls(classes=list(data["classes"]), splits=splits, format=data.get("format", FORMAT),
                   version=int(data.get("version", VERSION)), **fields)


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Write `_info.json`, the wids lists, then `manifest.json` (last: its presence means the
    directory is complete)."""
    directory = Path(directory)
    write_json_atomic(directory / TIMM_INFO, timm_info(manifest))
    for name, split in manifest.splits.items():
        write_json_atomic(directory / wids_name(name), wids_index(name, split))
    write_json_atomic(directory / MANIFEST, manifest.to_json())


def read_manifest(directory: Path) -> Manifest:
    """The manifest of a packed directory; a missing, damaged, foreign or too new one raises
    ManifestError saying what to run, since every reader would otherwise fail later and vaguer."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path} not found: pack the dataset first "
                            f"(python -m pack imagenet SRC --out {directory}) or pass a shard URL "
                            "with --num-samples")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        if int(data.get("version", 0)) > VERSION:
            raise ValueError(f"version {data['version']} is newer than this hrnet-fast reads ({VERSION})")
        return Manifest.from_json(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path} is not a valid hrnet-fast manifest ({exc}); re-run python -m pack") from exc


def timm_info(manifest: Manifest) -> dict[str, Any]:
    """timm's `wds` reader schema, so `timm` can read the same shards.

    timm (`timm/data/readers/reader_wds.py`, split given as `train` / `val`) joins each entry
    of `filenames` to the dataset root and pairs it with `shard_lengths` by position, so
    `filenames` must list every shard file, not a brace pattern.
    """
    splits = {}
    for name, split in manifest.splits.items():
        splits[name] = {
            "name": name,
            "num_samples": split.num_samples,
            "filenames": [s.name for s in split.shards],
            "shard_lengths": [s.num_samples for s in split.shards],
        }
    return {"name": "imagenet", "num_classes": len(manifest.classes), "splits": splits}


def wids_name(split: str) -> str:
    return f"{split}{WIDS_SUFFIX}"


def wids_index(name: str, split: SplitInfo) -> dict[str, Any]:
    """webdataset's wids shard list (`wids.ShardListDataset("DIR/train.wids.json")`); urls are
    relative, and wids resolves them against the file's own folder."""
    return {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": name,
            "shardlist": [{"url": s.name, "nsamples": s.num_samples, "filesize": s.bytes} for s in split.shards]}
