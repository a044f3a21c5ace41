"""`python -m pack verify DIR`: prove a shard directory is exactly what the packer published.

Per shard (in parallel): size and sha256 against the manifest, its sample index against the
manifest's hash and against a scan of the tar's headers, then the tar itself: every
sample is one `.jpg` + one `.cls`, labels are in range, the sample count matches, and (unless
`--quick`) every image fully decodes as a baseline RGB JPEG. The pack itself only checks the
JPEG structure of pass-through files (µs, where a decode costs ~1 ms); this is where every
image is decoded once. The first bad shard in manifest order is named in the error.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from hrnet_fast.errors import UserError
from hrnet_fast.shardformat.index import ShardIndexError, TarIndex, scan_file
from hrnet_fast.shardformat.manifest import TIMM_INFO, Manifest, ShardInfo, read_manifest, timm_info
from hrnet_fast.shardformat.samples import IMAGE_EXT, LABEL_EXT, decode_label, group_samples
from pack.parallel import Progress, run_jobs
from pack.shards import sha256_file


class VerifyError(UserError):
    """A shard directory that does not match its manifest; the message names the bad shard."""


@dataclass(frozen=True)
class ShardCheck:
    path: str
    info: ShardInfo
    num_classes: int
    decode: bool


def verify_directory(directory: Path, workers: int, quick: bool = False) -> Manifest:
    """Check every shard; raise VerifyError naming the first bad one. Returns the manifest."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    _check_timm_info(directory, manifest)
    checks = [ShardCheck(str(directory / shard.name), shard, len(manifest.classes), not quick)
              for split in manifest.splits.values() for shard in split.shards]
    total = sum(split.num_samples for split in manifest.splits.values())
    problems = dict(run_jobs(check_shard, checks, workers, total, "verify"))
    bad = [(c.info.name, problems[c.info.name]) for c in checks if problems[c.info.name]]
    if bad:
        more = f" ({len(bad) - 1} more bad shards)" if len(bad) > 1 else ""
        raise VerifyError(f"{directory / bad[0][0]}: {bad[0][1]}{more}; re-run the same "
                          "python -m pack imagenet command to rebuild damaged shards")
    for name, split in manifest.splits.items():
        if split.num_samples != sum(s.num_samples for s in split.shards):
            raise VerifyError(f"{directory / 'manifest.json'}: split {name} num_samples "
                              f"{split.num_samples} != sum of its shards")
    return manifest


def check_shard(check: ShardCheck, progress: Progress) -> tuple[str, str | None]:
    """(shard name, what is wrong or None)."""
    try:
        problem = _problem(check, progress)
    except (OSError, tarfile.TarError) as exc:
        problem = f"unreadable ({exc})"
    return check.info.name, problem


def _problem(check: ShardCheck, progress: Progress) -> str | None:
    path, info = Path(check.path), check.info
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != info.bytes:
        return f"size is {size} bytes, the manifest says {info.bytes}"
    if sha256_file(path) != info.sha256:
        return "sha256 differs from the manifest (the file changed after packing)"
    problem = _index_problem(path, info) if info.index else None
    if problem:
        return problem
    samples = 0
    with tarfile.open(path, mode="r:") as tar:
        for key, members in group_samples(_files(tar)):
            if members.keys() != {IMAGE_EXT, LABEL_EXT}:
                return f"sample {key} has members {sorted(members)}, expected {LABEL_EXT} and {IMAGE_EXT}"
            problem = _sample_problem(members, check.num_classes, check.decode)
            if problem:
                return f"sample {key}: {problem}"
            samples += 1
            progress(1)
    if samples != info.num_samples:
        return f"{samples} samples, the manifest says {info.num_samples}"
    return None


def _index_problem(tar: Path, info: ShardInfo) -> str | None:
    """What is wrong with the shard's sample index: missing, changed, unreadable, or not this tar's."""
    name = info.index
    try:
        data = tar.with_name(str(name)).read_bytes()
    except OSError as exc:
        return f"sample index {name} unreadable ({exc.strerror or exc})"
    if info.index_sha256 and hashlib.sha256(data).hexdigest() != info.index_sha256:
        return f"sample index {name}: sha256 differs from the manifest (the file changed after packing)"
    try:
        index = TarIndex.from_bytes(data)
    except ShardIndexError as exc:
        return f"sample index {name} is invalid ({exc})"
    if not index.matches(scan_file(tar)):
        return f"sample index {name} does not match the samples in the tar"
    return None


def _files(tar: tarfile.TarFile) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each regular file, in archive order."""
    for member in tar:
        stream = tar.extractfile(member) if member.isfile() else None
        if stream is not None:
            yield member.name, stream.read()


def _sample_problem(members: dict[str, bytes], num_classes: int, decode: bool) -> str | None:
    try:
        label = decode_label(members[LABEL_EXT])
    except ValueError:
        return f"label {members[LABEL_EXT][:20]!r} is not a decimal number"
    if not 0 <= label < num_classes:
        return f"label {label} outside 0..{num_classes - 1}"
    if not decode:
        return None
    try:
        image = Image.open(io.BytesIO(members[IMAGE_EXT]))
        if image.format != "JPEG" or image.mode != "RGB" or image.info.get("progressive"):
            return f"image is {image.format} {image.mode}, not a baseline RGB JPEG"
        image.load()
    except Exception as exc:  # any decoder failure means the sample is bad
        return f"image does not decode ({exc})"
    return None


def _check_timm_info(directory: Path, manifest: Manifest) -> None:
    try:
        info = json.loads((directory / TIMM_INFO).read_text())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"{directory / TIMM_INFO} unreadable ({exc}); re-run python -m pack") from None
    if info != timm_info(manifest):
        raise VerifyError(f"{directory / TIMM_INFO} disagrees with manifest.json; re-run python -m pack")
