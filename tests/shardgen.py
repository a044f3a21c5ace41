"""Tiny shard directories for the tests, written directly (tarfile + write_manifest).

Independent of `python -m pack` on purpose: loader tests must not depend on the packer, and they
need damage the packer never writes (corrupt JPEGs, bad labels, missing shards).
"""
from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from imagegen import encode, photo_like

from hrnet_fast.shardformat.manifest import Manifest, ShardInfo, SplitInfo, write_manifest


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def write_split(directory: Path, split: str, labels: Sequence[int], shard_size: int,
                size: tuple[int, int] = (48, 40), seed: int = 0,
                corrupt: Sequence[int] = (), bad_label: Sequence[int] = ()) -> SplitInfo:
    """Write `split-NNNNNN.tar` shards: sample i has key `{split}_{i:06d}` and label labels[i].

    Indices in `corrupt` get JPEG bytes cut to a few bytes (undecodable), those in `bad_label`
    a non-numeric label.
    """
    rng = np.random.default_rng(seed)
    info = SplitInfo()
    for shard_index, start in enumerate(range(0, len(labels), shard_size)):
        name = f"{split}-{shard_index:06d}.tar"
        stop = min(start + shard_size, len(labels))
        with tarfile.open(directory / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(start, stop):
                jpg = encode(photo_like(*size, rng), quality=90)
                add_file(tar, f"{split}_{i:06d}.jpg", jpg[:20] if i in corrupt else jpg)
                add_file(tar, f"{split}_{i:06d}.cls", b"x" if i in bad_label else str(labels[i]).encode())
        info.shards.append(ShardInfo(name=name, num_samples=stop - start,
                                     bytes=(directory / name).stat().st_size, sha256=""))
        info.num_samples += stop - start
    return info


def make_shards(directory: Path, train: int = 40, val: int = 0, shard_size: int = 10,
                num_classes: int = 4, size: tuple[int, int] = (48, 40),
                corrupt: Sequence[int] = (), bad_label: Sequence[int] = (),
                val_shard_size: int | None = None) -> Path:
    """A complete shard directory with manifest; labels cycle over `num_classes`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    splits = {}
    if train:
        splits["train"] = write_split(directory, "train", [i % num_classes for i in range(train)],
                                      shard_size, size, seed=1, corrupt=corrupt, bad_label=bad_label)
    if val:
        splits["val"] = write_split(directory, "val", [i % num_classes for i in range(val)],
                                    val_shard_size or shard_size, size, seed=2)
    classes = [f"n{i:08d}" for i in range(num_classes)]
    write_manifest(directory, Manifest(classes=classes, splits=splits,
                                       class_names={c: f"class {i}" for i, c in enumerate(classes)}))
    return directory
