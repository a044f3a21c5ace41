"""Tar shard → compressed samples (key, image bytes, label), with damage counted instead of raised.

Why a reader of our own instead of webdataset's pipeline or tarfile: the loader needs exact
per-shard sample positions (for val ranges and resuming), must keep going past a damaged shard
while accounting for every sample it could not deliver (so the caller can stop at a threshold
instead of training on a silent shortfall), and tarfile's per-member overhead is a sizeable share
of a core's budget for a small image.
"""
from __future__ import annotations

import gzip
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import NamedTuple, Protocol

from hrnet_fast import log as logs
from hrnet_fast.shardformat.samples import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, decode_label, group_samples
from hrnet_fast.shardformat.tar import tar_files

log = logs.get(__name__)


class RawSample(NamedTuple):
    key: str
    image: bytes  # still encoded: decoding waits until after the shuffle buffer
    label: int


@dataclass
class Faults:
    """What a worker could not deliver; sent with each batch as the change since the last one."""

    corrupt: int = 0  # samples skipped: undecodable image, missing or bad label
    lost: int = 0  # samples in missing or damaged shards (by the manifest's or estimated count)
    repeated: int = 0  # earlier samples reused so a worker still fills its batches
    bad_shards: list[str] = field(default_factory=list)

    def total(self) -> int:
        return self.corrupt + self.lost + self.repeated

    def add(self, other: Faults) -> None:
        self.corrupt += other.corrupt
        self.lost += other.lost
        self.repeated += other.repeated
        self.bad_shards.extend(s for s in other.bad_shards if s not in self.bad_shards)  # several readers share one

    def take(self) -> Faults:
        """The counts so far, resetting this object (for per-batch deltas)."""
        delta = Faults(self.corrupt, self.lost, self.repeated, self.bad_shards)
        self.corrupt = self.lost = self.repeated = 0
        self.bad_shards = []
        return delta


class ByteStream(Protocol):
    """What the tar reader needs of a shard stream: `read`, and closing at the end of a `with`
    block. Local files, webdataset's streams and gzip.GzipFile all have it (typeshed gives them
    no common base class)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def __enter__(self) -> ByteStream: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None, /) -> None: ...


def open_url(url: str) -> ByteStream:
    """A binary stream: local paths directly, anything else (pipe:, http:, s3: …) via webdataset;
    `.tar.gz` / `.tgz` shards decompressed on the fly."""
    if "://" not in url and not url.startswith("pipe:"):
        stream = open(url, "rb", buffering=1 << 20)
    else:
        from webdataset.gopen import gopen  # costs a second to import; only foreign URLs need it

        stream = gopen(url, "rb")
    return gzip.GzipFile(fileobj=stream) if url.endswith((".gz", ".tgz")) else stream


def to_sample(key: str, fields: dict[str, bytes]) -> RawSample | None:
    """The sample, or None when its image or an integer label is missing."""
    image = next((fields[e] for e in IMAGE_EXTENSIONS if e in fields), None)
    label = next((fields[e] for e in LABEL_EXTENSIONS if e in fields), None)
    if image is None or label is None:
        return None
    try:
        return RawSample(key, image, decode_label(label))
    except ValueError:
        return None


def read_shard(url: str, expected: int, faults: Faults, start: int = 0,
               stop: int | None = None) -> Iterator[RawSample]:
    """Samples at positions [start, stop) of one shard; damage is warned about and counted.

    A position is a sample group in the tar, readable or not, so positions match the manifest's
    per-shard counts. A shard that cannot be opened or breaks off counts its undelivered
    positions (by `expected`) as lost.
    """
    stop = expected if stop is None else stop
    position = 0
    try:
        with open_url(url) as stream:
            for key, fields in group_samples(tar_files(stream)):
                if position >= stop:
                    break
                if position >= start:
                    sample = to_sample(key, fields)
                    if sample is None:
                        faults.corrupt += 1
                    else:
                        yield sample
                position += 1
    except (OSError, tarfile.TarError, EOFError, zlib.error) as exc:
        delivered = max(min(position, stop) - start, 0)
        faults.lost += max(stop - start - delivered, 0)
        faults.bad_shards.append(os.path.basename(url))
        log.warning(f"shard {url} unreadable after {position} samples ({exc}); skipped the rest of it")
