"""The tar container as shards use it: members in order, with the byte span each one occupies.

A minimal reader (ustar, GNU long names, pax `path`/`size`) at a tenth of tarfile's per-member
cost, which matters at thousands of samples per second per core. It lives with the format
because the loader (reading samples) and the sample index (recording where each sample starts)
must agree on what a member is and where it begins. Bad header checksums and short reads raise,
so damage is reported, never misread.
"""
from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_FILE_TYPES = (b"0", b"\0", b"7")



class Readable(Protocol):
    """All the tar parser needs of a stream: local files, pipes and gzip.GzipFile have it."""

    def read(self, size: int = -1, /) -> bytes: ...

class Member(NamedTuple):
    """One regular file: its bytes span [start, end) of the archive, headers and padding included."""

    start: int  # the member's first header block (a pax or GNU long-name header before it counts)
    end: int  # just past its padded data
    name: str
    data: bytes | None  # None when the data was skipped


def tar_members(stream: Readable, *, offset: int = 0, stop: int | None = None,
                skip_data: Callable[[int], object] | None = None) -> Iterator[Member]:
    """Each regular file of a tar stream, in archive order.

    `offset` is the stream's position in the archive (reported spans are absolute); reading ends
    at the end-of-archive block, or at `stop` when only a part of an archive was read. With
    `skip_data` (e.g. a file's relative seek) member data is stepped over instead of read, and
    members come with `data=None`.
    """
    read = stream.read
    position = first = offset
    pending: dict[str, str] = {}  # overrides for the next member from a pax or GNU long-name entry
    while stop is None or position < stop:
        header = read(BLOCK)
        if header == _ZERO_BLOCK:
            return
        if len(header) < BLOCK:
            raise EOFError("tar ends without its end-of-archive block: cut short")
        if sum(header[:148]) + 256 + sum(header[156:]) != _octal(header[148:156]):
            raise tarfile.HeaderError("bad tar header checksum")
        size = int(pending.get("size", _octal(header[124:136])))
        padded = size + -size % BLOCK
        kind = header[156:157]
        position += BLOCK + padded
        if skip_data is None or kind in (b"x", b"L"):
            data = read(size)
            if len(data) < size or len(read(padded - size)) < padded - size:
                raise EOFError(f"tar member cut short ({len(data)} of {size} bytes)")
        else:
            data = None
            skip_data(padded)
        if kind == b"x":
            pending.update(_pax_records(data or b""))
        elif kind == b"L":
            pending["path"] = (data or b"").split(b"\0", 1)[0].decode("utf-8", "replace")
        elif kind in _FILE_TYPES:
            yield Member(first, position, pending.get("path") or _ustar_name(header), data)
            pending, first = {}, position
        elif kind != b"g":  # directories, links …: nothing to read; a global pax header: ignored
            pending, first = {}, position
        else:
            first = position


def tar_files(stream: Readable, stop: int | None = None) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular file in a tar stream (up to byte `stop`), in order."""
    for member in tar_members(stream, stop=stop):
        yield member.name, member.data or b""


def _octal(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for values too large for octal
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise tarfile.HeaderError(f"bad number in tar header: {field!r}") from None


def _ustar_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
    return (prefix + b"/" + name if prefix else name).decode("utf-8", "replace")


def _pax_records(data: bytes) -> dict[str, str]:
    """The `path` and `size` records of a pax extended header ("LEN key=value\\n" each)."""
    records: dict[str, str] = {}
    pos = 0
    try:
        while pos < len(data):
            space = data.index(b" ", pos)
            length = int(data[pos:space])
            key, _, value = data[space + 1:pos + length - 1].partition(b"=")
            if key in (b"path", b"size"):
                records[key.decode()] = value.decode("utf-8", "replace")
            pos += length
    except ValueError:
        raise tarfile.HeaderError("bad pax header") from None
    return records
