"""`--shards` → the list of shard URLs of one split and their sample counts.

A packed directory carries exact per-shard counts in its manifest, which the loader needs for
equal batch counts on every rank. A foreign WebDataset URL or brace pattern has none, so the
user gives the split's total (`--num-samples`) and the shards are assumed equal; any shortfall
that assumption causes is made up and counted by the stream (see `stream.py`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from braceexpand import braceexpand

from hrnet_fast.errors import UserError
from hrnet_fast.shardformat.manifest import MANIFEST, read_manifest


@dataclass(frozen=True)
class ShardSource:
    """One split's shards: `urls[i]` holds `shard_sizes[i]` samples (estimated unless `exact`)."""

    urls: list[str]
    shard_sizes: list[int]
    split: str
    exact: bool
    classes: list[str] | None = None  # synsets in label order; None for foreign shards
    class_names: dict[str, str] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(self.shard_sizes)

    @property
    def names(self) -> list[str]:
        return [os.path.basename(u) for u in self.urls]


def is_url(shards: str) -> bool:
    """A brace pattern, a "::" list, a scheme (pipe:, http://, s3:// …) or a path to one tar."""
    return ("{" in shards or "::" in shards or "://" in shards or shards.startswith("pipe:")
            or shards.endswith((".tar", ".tar.gz", ".tgz")))


def open_source(shards: str, split: str = "train", num_samples: int | None = None) -> ShardSource:
    """The shards of `split` in a packed directory, or the shards a URL / brace pattern names."""
    shards = str(shards)
    if is_url(shards):
        return _from_url(shards, split, num_samples)
    directory = Path(shards)
    if not directory.is_dir():
        raise UserError(f"--shards {shards}: no such directory; pack one with `python -m pack imagenet "
                        f"SRC --out {shards}` or pass a shard URL/brace pattern with --num-samples")
    if num_samples is not None:
        raise UserError(f"--num-samples is for shard URLs only: {directory / MANIFEST} has the counts")
    manifest = read_manifest(directory)
    if split not in manifest.splits or not manifest.splits[split].shards:
        raise UserError(f"{directory} has no {split!r} split (it has: {', '.join(manifest.splits) or 'none'}); "
                        f"pack it with `python -m pack imagenet SRC --out {directory} --splits {split}`")
    infos = manifest.splits[split].shards
    return ShardSource(urls=[str(directory / s.name) for s in infos],
                       shard_sizes=[s.num_samples for s in infos], split=split, exact=True,
                       classes=list(manifest.classes), class_names=dict(manifest.class_names))


def _from_url(url: str, split: str, num_samples: int | None) -> ShardSource:
    if num_samples is None:
        raise UserError(f"--shards {url} has no manifest: pass --num-samples N (the split's total "
                        "sample count), or pack the data with `python -m pack imagenet`")
    urls = [u for part in url.split("::") for u in braceexpand(part)]
    if num_samples < len(urls):
        raise UserError(f"--num-samples {num_samples} is fewer than the {len(urls)} shards {url} names")
    local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
    if local and not any(os.path.isfile(u) for u in local):
        raise UserError(f"--shards {url}: none of its {len(urls)} files exist (first: {urls[0]})")
    base, extra = divmod(num_samples, len(urls))
    sizes = [base + (i < extra) for i in range(len(urls))]
    return ShardSource(urls=urls, shard_sizes=sizes, split=split, exact=False)
