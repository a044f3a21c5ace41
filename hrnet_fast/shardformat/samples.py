"""One sample in a shard: tar members `KEY.jpg` (the image) and `KEY.cls` (its class index).

WebDataset's convention decides the rest: a member's key is its path up to the first dot of
the file name, its field the lower-cased remainder, and consecutive members with one key form a
sample. So a key must be dot-free, and the packer derives it from the source file's stem so that
every sample can be traced back to its file.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

IMAGE_EXT = "jpg"
LABEL_EXT = "cls"
# The fields a reader accepts, ours first: shards written by other tools use these too.
IMAGE_EXTENSIONS = (IMAGE_EXT, "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")
LABEL_EXTENSIONS = (LABEL_EXT, "class", "label", "target")


def key_for_file(relpath: str) -> str:
    """The file's stem made dot-free, so WebDataset's first-dot split gives the key back."""
    name = relpath.rsplit("/", 1)[-1]
    return os.path.splitext(name)[0].replace(".", "_")


def member_name(key: str, ext: str) -> str:
    return f"{key}.{ext}"


def split_member(member: str) -> tuple[str, str]:
    """(key, ext) of a tar member name: key = path up to the first dot of the file name."""
    directory, base = os.path.split(member)
    stem, _, ext = base.partition(".")
    return os.path.join(directory, stem) if directory else stem, ext.lower()


def encode_label(label: int) -> bytes:
    """ASCII decimal, the form timm's and webdataset's `cls` decoders read."""
    return str(label).encode("ascii")


def decode_label(data: bytes) -> int:
    """The class index of a label field; ValueError if it is not an ASCII decimal number."""
    return int(data.decode("ascii"))


def group_samples(members: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) for each run of consecutive (name, data) tar members sharing a key."""
    key: str | None = None
    fields: dict[str, bytes] = {}
    for name, data in members:
        member_key, ext = split_member(name)
        if member_key != key:
            if key is not None:
                yield key, fields
            key, fields = member_key, {}
        fields[ext] = data
    if key is not None:
        yield key, fields
