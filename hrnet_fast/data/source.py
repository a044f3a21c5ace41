"""`--shards` → the list of shard URLs of one split, their sample counts and sample indexes.

A packed directory carries exact per-shard counts in its manifest, and an index beside each
shard. Local tars named by a URL or brace pattern get their index built on first open
(indexes.py), which also gives their exact counts. With indexes the loader plans sample ranges;
without (`pipe:`/http URLs, gzipped tars) the user gives the split's total (`--num-samples`),
the shards are assumed equal, and any shortfall that assumption causes is made up and counted
by the stream (see `stream.py`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from braceexpand import braceexpand

from hrnet_fast import log as logs
from hrnet_fast.data.indexes import shard_indexes
from hrnet_fast.errors import UserError
from hrnet_fast.shardformat.index import TarIndex
from hrnet_fast.shardformat.manifest import MANIFEST, read_manifest

log = logs.get(__name__)


@dataclass(frozen=True)
class ShardSource:
    """One split's shards: `urls[i]` holds `shard_sizes[i]` samples (estimated unless `exact`)."""

    urls: list[str]
    shard_sizes: list[int]
    split: str
    exact: bool
    classes: list[str] | None = None  # synsets in label order; None for foreign shards
    class_names: dict[str, str] = field(default_factory=dict)
    # Per shard (None: unreadable at open); None when some shard cannot be indexed at all.
    indexes: list[TarIndex | None] | None = field(default=None, compare=False, repr=False)

    @property
    def indexed(self) -> bool:
        """Whether readers can start anywhere in a shard (the sample-ranges plan)."""
        return self.indexes is not None

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
    urls = [str(directory / s.name) for s in infos]
    indexes = shard_indexes(urls)
    return ShardSource(urls=urls, shard_sizes=_sizes([s.num_samples for s in infos], indexes), split=split,
                       exact=True, classes=list(manifest.classes), class_names=dict(manifest.class_names),
                       indexes=indexes)


def _sizes(planned: list[int], indexes: list[TarIndex | None] | None) -> list[int]:
    """The indexes' counts where there are indexes (what the tars really hold), else `planned`."""
    if indexes is None:
        return planned
    return [planned[i] if index is None else index.num_samples for i, index in enumerate(indexes)]


def _from_url(url: str, split: str, num_samples: int | None) -> ShardSource:
    urls = [u for part in url.split("::") for u in braceexpand(part)]
    indexes = shard_indexes(urls)
    if indexes is not None and any(indexes):
        sizes = _sizes([0] * len(urls), indexes)
        if num_samples is not None and num_samples != sum(sizes):
            log.warning(f"--num-samples {num_samples} differs from the {sum(sizes)} samples the shards of "
                        f"{url} hold; using their sample indexes' counts")
        return ShardSource(urls=urls, shard_sizes=sizes, split=split, exact=True, indexes=indexes)
    if num_samples is None:
        raise UserError(f"--shards {url} has no manifest: pass --num-samples N (the split's total "
                        "sample count), or pack the data with `python -m pack imagenet`")
    if num_samples < len(urls):
        raise UserError(f"--num-samples {num_samples} is fewer than the {len(urls)} shards {url} names")
    local = [u for u in urls if "://" not in u and not u.startswith("pipe:")]
    if local and not any(os.path.isfile(u) for u in local):
        raise UserError(f"--shards {url}: none of its {len(urls)} files exist (first: {urls[0]})")
    base, extra = divmod(num_samples, len(urls))
    sizes = [base + (i < extra) for i in range(len(urls))]
    return ShardSource(urls=urls, shard_sizes=sizes, split=split, exact=False)
