"""The shard plan (which files go to which shard) and building one shard atomically and resumably.

The plan is a pure function of the scan and the settings: train is shuffled with
`numpy.random.default_rng(seed).permutation`, val keeps sorted order, and every shard takes the
next `shard_size` *input files*. A rejected file leaves its shard one sample short instead of
shifting every later shard, so the plan never depends on outcomes and a resumed run can rebuild
exactly the missing shards.

A shard is written as `.train-000003.tar.tmp-PID` and renamed when complete; then its sample
index `train-000003.idx` (the byte offset of every sample, recorded while writing: see
hrnet_fast/shardformat/index.py), and last its sidecar `.train-000003.json`, which records the
plan fingerprint (settings + every input's path, key, label, size and mtime), the shard's and
the index's sha256, and its repaired / rejected records. A later run reuses the shard only if
the fingerprint matches and the tar and its index still have those sizes and hashes; otherwise
both are rebuilt, so an interrupted pack never leaves a stale index behind. Identical inputs
give byte-identical shards and indexes (fixed tar metadata, plan order), so a resumed pack
equals an uninterrupted one. Workers do not fsync (a blocked worker leaves its core idle, and
the rename is already atomic against the process being killed); the parent fsyncs every shard
and index once before publishing the manifest, and the sha256 checks before reuse catch a file
torn by a power cut.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import PIL

from hrnet_fast.shardformat.index import TarIndex, index_name
from hrnet_fast.shardformat.manifest import ShardInfo
from hrnet_fast.shardformat.samples import IMAGE_EXT, LABEL_EXT, encode_label, member_name
from pack.images import PASSED, REJECTED, REPAIRED, RESIZED, Outcome, prepare, restart_transcoder
from pack.parallel import Progress
from pack.scan import SplitFiles
from pack.tarwriter import TarWriter

CONTENT_VERSION = 2  # bump whenever the bytes packed for the same input and settings change (2: restart-coded JPEGs)
CRASH_ENV = "HRNET_FAST_PACK_CRASH_AFTER"  # test hook: die mid-shard after N shards were built
PROGRESS_EVERY = 32


class Sample(NamedTuple):
    path: str   # relative to the source root
    key: str
    label: int


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to build (or reuse) one shard; small enough to pickle cheaply."""
    name: str
    samples: list[Sample]
    src: str
    out: str
    resize: int
    quality: int
    restart: int  # MCUs per restart interval of the stored JPEGs (0: none)


@dataclass
class ShardResult:
    info: ShardInfo
    counts: dict[str, int] = field(default_factory=dict)  # passed / resized / repaired / rejected
    repaired: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    reused: bool = False


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def sidecar_name(shard: str) -> str:
    return f".{shard[:-len('.tar')]}.json"


def shard_plan(split: SplitFiles, shard_size: int, seed: int) -> list[np.ndarray]:
    """File indices of each shard: seeded global shuffle for train, sorted order otherwise."""
    count = len(split.files)
    order = (np.random.default_rng(seed).permutation(count) if split.name == "train"
             else np.arange(count))
    return [order[start:start + shard_size] for start in range(0, count, shard_size)]


def shard_tasks(split: SplitFiles, plan: list[np.ndarray], src: Path, out: Path, resize: int,
                quality: int, restart: int) -> Iterator[ShardTask]:
    """Tasks in plan order, built lazily so only the shards in flight hold their file lists."""
    for index, members in enumerate(plan):
        samples = [Sample(split.files[i], split.key(i), int(split.labels[i])) for i in members]
        yield ShardTask(shard_name(split.name, index), samples, str(src), str(out), resize, quality, restart)


def ensure_shard(task: ShardTask, progress: Progress) -> ShardResult:
    """Reuse the shard from an earlier run if it provably matches this plan, else build it."""
    out = Path(task.out)
    fingerprint = _fingerprint(task)
    result = _reusable(out / task.name, out / sidecar_name(task.name), fingerprint)
    if result is not None:
        progress(len(task.samples))
        return result
    result = _build(task, progress)
    record = {k: v for k, v in asdict(result).items() if k != "reused"}
    _write_file(out / sidecar_name(task.name), json.dumps({"fingerprint": fingerprint, **record}, indent=1).encode())
    return result


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(task: ShardTask) -> str:
    digest = hashlib.sha256(json.dumps([CONTENT_VERSION, PIL.__version__, restart_transcoder(task.restart), task.name,
                                        task.resize, task.quality, task.restart]).encode())
    for sample in task.samples:
        try:
            st = os.stat(os.path.join(task.src, sample.path))
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        digest.update(f"{sample.path}\0{sample.key}\0{sample.label}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def _reusable(tar: Path, sidecar: Path, fingerprint: str) -> ShardResult | None:
    try:
        record = json.loads(sidecar.read_text())
        if record["fingerprint"] != fingerprint or tar.stat().st_size != record["info"]["bytes"]:
            return None
        result = ShardResult(info=ShardInfo.from_json(record["info"]), counts=record["counts"],
                             repaired=record["repaired"], rejected=record["rejected"], reused=True)
        index = tar.with_name(index_name(tar.name)).read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if hashlib.sha256(index).hexdigest() != result.info.index_sha256:
        return None
    return result if sha256_file(tar) == result.info.sha256 else None


def _build(task: ShardTask, progress: Progress) -> ShardResult:
    global _built  # noqa: PLW0603 - counts shards for the crash hook only
    out = Path(task.out)
    tmp = out / f".{task.name}.tmp-{os.getpid()}"
    counts: Counter[str] = Counter({PASSED: 0, RESIZED: 0, REPAIRED: 0, REJECTED: 0})
    repaired, rejected = [], []
    offsets: list[int] = []  # where each sample starts, then where the last one ends
    try:
        with open(tmp, "wb", buffering=1 << 20) as f:
            tar = TarWriter(f)
            for n, sample in enumerate(task.samples):
                outcome = _prepare_file(os.path.join(task.src, sample.path), task.resize, task.quality,
                                        task.restart)
                counts[outcome.status] += 1
                if outcome.jpeg is None:
                    rejected.append({"file": sample.path, "reason": outcome.reason})
                else:
                    offsets.append(tar.bytes)
                    tar.add(member_name(sample.key, LABEL_EXT), encode_label(sample.label))
                    tar.add(member_name(sample.key, IMAGE_EXT), outcome.jpeg)
                    if outcome.status == REPAIRED:
                        repaired.append({"file": sample.path, "reason": outcome.reason})
                if n % PROGRESS_EVERY == PROGRESS_EVERY - 1:
                    progress(PROGRESS_EVERY)
                if n == len(task.samples) // 2:
                    _crash_hook()
            offsets.append(tar.bytes)
            tar.close()
        os.replace(tmp, out / task.name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    index = TarIndex(tar.bytes, np.asarray(offsets, np.int64)).to_bytes()
    _write_file(out / index_name(task.name), index)
    progress(len(task.samples) % PROGRESS_EVERY)
    _built += 1
    packed = len(task.samples) - counts[REJECTED]
    return ShardResult(ShardInfo(task.name, packed, tar.bytes, tar.sha256, index_name(task.name),
                                 hashlib.sha256(index).hexdigest()), dict(counts), repaired, rejected)


def _write_file(path: Path, data: bytes) -> None:
    """Temp file + rename, without fsync: on ext4 an fsync here commits the journal and so waits
    for the whole shard to reach the disk. An index or sidecar lost to a power cut only means a
    rebuild (the sidecar, written last, records the index's hash)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sync_files(paths: list[Path]) -> None:
    """fsync shards before the manifest is published (workers skip it: see the module doc)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _prepare_file(path: str, resize: int, quality: int, restart: int) -> Outcome:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return Outcome(REJECTED, reason=f"unreadable ({exc.strerror or exc})")
    return prepare(data, os.path.splitext(path)[1], resize, quality, restart)


_built = 0  # shards this process has built; only the crash hook reads it


def _crash_hook() -> None:
    """Die like `kill -9` halfway through a shard once N shards were built (tests of resume)."""
    after = os.environ.get(CRASH_ENV)
    if after is not None and _built >= int(after):
        os._exit(137)
