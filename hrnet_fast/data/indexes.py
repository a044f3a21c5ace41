"""The sample index of every shard of a source: read from beside the tar, or built on first open.

`pack` writes an index next to each shard. Shards from other tools (or packed before indexes
existed) get one by scanning the tar's headers once (the data is seeked over); it is cached
next to the tar when that folder is writable, so the next run reads it, and kept in memory
otherwise. A cached index is trusted only while the tar still has the size it recorded. Only
local, uncompressed tars can be indexed: a `pipe:`/http URL or a gzipped tar cannot be read
from the middle, so a source with any of those uses the whole-shard plan.
"""
from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

from hrnet_fast import log as logs
from hrnet_fast.atomic import atomic_write
from hrnet_fast.shardformat.index import TAR_SUFFIX, ShardIndexError, TarIndex, index_name, read_index, scan_file

log = logs.get(__name__)


def indexable(url: str) -> bool:
    """A local, uncompressed tar: the only kind a reader can enter at a byte offset."""
    return "://" not in url and not url.startswith("pipe:") and url.endswith(TAR_SUFFIX)


def shard_indexes(urls: Sequence[str]) -> list[TarIndex | None] | None:
    """Each shard's index (None for a shard that cannot be read: its samples count as lost when
    planned); None for the whole source when any shard cannot be indexed."""
    if not all(indexable(u) for u in urls):
        return None
    return [shard_index(Path(u)) for u in urls]


def shard_index(tar: Path) -> TarIndex | None:
    """The tar's index: the cached one if it still describes the tar, else a fresh scan, cached."""
    path = Path(index_name(str(tar)))
    try:
        tar_bytes = tar.stat().st_size
    except OSError as exc:
        log.warning(f"shard {tar} unreadable ({exc.strerror or exc}); its samples will count as lost")
        return None
    cached, foreign = _cached(path)
    if cached is not None and cached.tar_bytes == tar_bytes:
        return cached
    try:
        index = scan_file(tar)
    except (OSError, tarfile.TarError, EOFError) as exc:
        log.warning(f"shard {tar} could not be indexed ({exc}); its samples will count as lost: "
                    "check it with `python -m pack verify DIR`")
        return None
    if not foreign and os.access(path.parent, os.W_OK):
        _store(path, index)
    return index


def _cached(path: Path) -> tuple[TarIndex | None, bool]:
    """(the index stored at `path` or None, whether `path` holds some other file not to overwrite)."""
    try:
        return read_index(path), False
    except FileNotFoundError:
        return None, False
    except (OSError, ShardIndexError):
        return None, True


def _store(path: Path, index: TarIndex) -> None:
    """Atomically, so concurrent ranks building the same index never see half of one."""
    try:
        with atomic_write(path, "wb") as f:
            f.write(index.to_bytes())
    except OSError as exc:
        log.warning(f"could not cache the sample index {path} ({exc.strerror or exc}); it is kept in memory")
