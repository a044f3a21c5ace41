"""The per-shard sample index: where every sample of a tar starts, so a reader can start anywhere.

With it any number of readers can share one shard and a plan can deal sample ranges instead of
whole shards (hrnet_fast.data.plan). It sits next to its shard, named like it with `.idx` for
`.tar` (`train-000000.tar` → `train-000000.idx`), as JSON:

    {"format": "hrnet-fast-tar-index", "version": 1, "tar_bytes": N, "offsets": [o0, o1, …, on]}

`o_i` is the byte offset of sample i's first tar header (a pax or long-name header before it
counts), `on` the end of the last sample (where the end-of-archive blocks begin): sample i is
the bytes [o_i, o_i+1). A sample is a run of consecutive members sharing a key, as
`samples.group_samples` groups them, so index positions are the loader's sample positions.
`tar_bytes` is the size of the tar it describes: a reader checks it before trusting the offsets.
JSON because an index is small (one number per sample), readable, and versioned like the
manifest; a reader refuses a newer version instead of misreading it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hrnet_fast.shardformat.samples import split_member
from hrnet_fast.shardformat.tar import tar_members

FORMAT = "hrnet-fast-tar-index"
VERSION = 1
TAR_SUFFIX, INDEX_SUFFIX = ".tar", ".idx"


class ShardIndexError(ValueError):
    """An index file that is not a valid index, or not the index of the tar beside it."""


@dataclass(frozen=True, eq=False)
class TarIndex:
    """Sample i of the tar is the bytes [offsets[i], offsets[i + 1])."""

    tar_bytes: int
    offsets: np.ndarray  # int64, num_samples + 1 entries, increasing

    @property
    def num_samples(self) -> int:
        return len(self.offsets) - 1

    def to_bytes(self) -> bytes:
        return json.dumps({"format": FORMAT, "version": VERSION, "tar_bytes": self.tar_bytes,
                           "offsets": self.offsets.tolist()}, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> TarIndex:
        """The index in `data`; ShardIndexError for anything else (another format, a newer version,
        offsets that are not increasing or lie outside the tar)."""
        try:
            record = json.loads(data)
            if record.get("format") != FORMAT:
                raise ShardIndexError(f"format is {record.get('format')!r}, not {FORMAT!r}")
            if int(record["version"]) > VERSION:
                raise ShardIndexError(f"version {record['version']} is newer than this reader's ({VERSION})")
            tar_bytes, offsets = int(record["tar_bytes"]), np.asarray(record["offsets"], np.int64)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ShardIndexError(f"not a sample index ({exc})") from None
        if offsets.ndim != 1 or not len(offsets) or offsets[0] < 0 or offsets[-1] > tar_bytes \
                or np.any(np.diff(offsets) <= 0):
            raise ShardIndexError("offsets are not increasing positions inside the tar")
        return cls(tar_bytes, offsets)

    def matches(self, other: TarIndex) -> bool:
        return self.tar_bytes == other.tar_bytes and np.array_equal(self.offsets, other.offsets)


def index_name(tar_name: str) -> str:
    """The index file's name (or path) for a `.tar` shard's."""
    if not tar_name.endswith(TAR_SUFFIX):
        raise ValueError(f"only {TAR_SUFFIX} shards have a sample index: {tar_name}")
    return tar_name[:-len(TAR_SUFFIX)] + INDEX_SUFFIX


def scan_tar(stream: BinaryIO, tar_bytes: int) -> TarIndex:
    """The index of a seekable tar stream, from its headers alone (the data is seeked over)."""
    offsets: list[int] = []
    key, end = None, 0
    for member in tar_members(stream, skip_data=lambda size: stream.seek(size, 1)):
        member_key, _ = split_member(member.name)
        if member_key != key:
            offsets.append(member.start)
            key = member_key
        end = member.end
    return TarIndex(tar_bytes, np.asarray([*offsets, end], np.int64))


def scan_file(path: Path) -> TarIndex:
    with open(path, "rb") as f:
        return scan_tar(f, Path(path).stat().st_size)


def read_index(path: Path) -> TarIndex:
    """The index stored at `path`; OSError if unreadable, ShardIndexError if not a valid index."""
    return TarIndex.from_bytes(Path(path).read_bytes())
