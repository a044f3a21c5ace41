"""`python -m pack`: every awkward input kind, read-back with webdataset / tarfile / timm,
determinism, resume after a crash, verify, flat val layouts, user errors."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from click.testing import CliRunner
from imagegen import bad_inputs, encode, good_tree, photo_like, write
from PIL import Image

from hrnet_fast.errors import UserError
from hrnet_fast.shardformat.index import read_index
from pack import images
from pack.__main__ import cli
from pack.jpeg import BrokenJpeg, sniff_jpeg
from pack.scan import scan_imagenet
from pack.shards import CRASH_ENV

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["n01000001", "n01000002", "n01000003"]
BAD_CLASS = "n01000002"
SIZE = (40, 32)
ARGS = ["--shard-size", "4", "--workers", "1"]
REPAIRED = {"cmyk.JPEG": "cmyk jpeg", "gray.JPEG": "grayscale jpeg",
            "progressive.JPEG": "progressive jpeg", "palette_png.JPEG": "png behind .JPEG, palette",
            "rgba.png": "png image, rgba"}
REJECTED = {"truncated.JPEG": "truncated", "empty.JPEG": "empty", "random.JPEG": "not an image"}


def run(*args: str, env: dict | None = None):
    result = CliRunner(env=env).invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def pack(src: Path, out: Path, *extra: str):
    result = run("imagenet", src, "--out", out, *ARGS, *extra)
    assert result.exit_code == 0, result.output
    return result


def shard_shas(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tar"))}


def reused(summary: str) -> dict[str, int]:
    """The `reused` column of the summary table."""
    return {line.split()[0]: int(line.split()[-1]) for line in summary.splitlines()[1:]
            if line.split() and line.split()[0] in ("train", "val")}


def samples(out: Path, split: str) -> list[dict]:
    urls = [str(p) for p in sorted(out.glob(f"{split}-*.tar"))]
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    good_tree(root, CLASSES, {"train": 6, "val": 2}, SIZE)
    for name, data in bad_inputs(np.random.default_rng(1), SIZE).items():
        write(root / "train" / BAD_CLASS / name, data)
    return root


@pytest.fixture(scope="module")
def packed(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    pack(source, out)
    return out


def test_help_for_every_command():
    for args in (["--help"], ["imagenet", "--help"], ["verify", "--help"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage" in result.output


def test_every_file_is_accounted_for(packed):
    manifest = json.loads((packed / "manifest.json").read_text())
    stats = manifest["stats"]["train"]
    assert stats == {"files": 26, "packed": 23, "passed": 18, "resized": 0, "repaired": 5,
                     "rejected": 3, "skipped": 2}
    repaired = {Path(r["file"]).name: r["reason"] for r in manifest["repaired"]["train"]}
    assert repaired == REPAIRED
    rejected = {Path(r["file"]).name: r["reason"] for r in manifest["rejected"]["train"]}
    assert set(rejected) == set(REJECTED)
    assert all(REJECTED[name] in reason for name, reason in rejected.items())
    skipped = {Path(r["file"]).name: r["reason"] for r in manifest["skipped"]["train"]}
    assert skipped == {".DS_Store": "hidden file", "notes.txt": "not an image (.txt)"}
    assert manifest["classes"] == CLASSES
    assert manifest["settings"]["shard_size"] == 4 and manifest["format"] == "hrnet-fast-shards"
    assert manifest["settings"]["restart_interval"] == 1
    assert manifest["settings"]["restart_transcoder"].startswith("libjpeg-turbo ")
    assert manifest["splits"]["val"]["num_samples"] == 6


RESTART_EVERY_MCU = b"\xff\xdd\x00\x04\x00\x01"  # the DRI segment: a restart marker after every MCU


def pixels(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def test_webdataset_reads_labels_and_original_pixels(packed, source):
    train = samples(packed, "train")
    assert len(train) == 23 and len({s["__key__"] for s in train}) == 23
    by_key = {s["__key__"]: s for s in train}
    for synset in CLASSES:
        for i in range(6):
            sample = by_key[f"{synset}_{i}"]
            assert int(sample["cls"]) == CLASSES.index(synset)
            original = (source / "train" / synset / f"{synset}_{i}.JPEG").read_bytes()
            assert RESTART_EVERY_MCU in sample["jpg"] and RESTART_EVERY_MCU not in original  # restart-coded
            np.testing.assert_array_equal(pixels(sample["jpg"]), pixels(original))  # losslessly
    for name in REPAIRED:
        image = Image.open(io.BytesIO(by_key[Path(name).stem]["jpg"]))
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", SIZE)
        assert not image.info.get("progressive")
        assert int(by_key[Path(name).stem]["cls"]) == CLASSES.index(BAD_CLASS)
    white = Image.open(io.BytesIO(by_key["rgba"]["jpg"]))
    assert white.getpixel((0, 0)) != (0, 0, 0)
    keys = [s["__key__"] for s in train]
    assert keys != sorted(keys), "train must be shuffled"
    val = [s["__key__"] for s in samples(packed, "val")]
    assert val == sorted(val), "val keeps sorted order"


def test_tar_metadata_is_fixed(packed):
    with tarfile.open(packed / "train-000000.tar") as tar:
        members = tar.getmembers()
    assert members and all((m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o444)
                           for m in members)
    assert [m.name.split(".")[1] for m in members[:2]] == ["cls", "jpg"]


def tarfile_offsets(path: Path) -> list[int]:
    """Each sample's first header offset, then the end of the last sample, as tarfile sees them."""
    offsets, key, end = [], None, 0
    with tarfile.open(path) as tar:
        for member in tar:
            if member.name.split(".")[0] != key:
                offsets.append(member.offset)
                key = member.name.split(".")[0]
            end = member.offset_data + member.size + (-member.size % 512)
    return [*offsets, end]


def test_every_shard_has_a_sample_index_matching_the_tar(packed):
    manifest = json.loads((packed / "manifest.json").read_text())
    for split in ("train", "val"):
        shards = manifest["splits"][split]["shards"]
        for shard in shards:
            path = packed / shard["name"]
            index = read_index(packed / shard["index"])
            assert shard["index"] == path.with_suffix(".idx").name
            assert shard["index_sha256"] == hashlib.sha256((packed / shard["index"]).read_bytes()).hexdigest()
            assert index.tar_bytes == shard["bytes"] and index.num_samples == shard["num_samples"]
            assert index.offsets.tolist() == tarfile_offsets(path)
            data = path.read_bytes()  # each range is one sample: its own .cls and .jpg members
            for start, stop in zip(index.offsets[:-1], index.offsets[1:]):
                with tarfile.open(fileobj=io.BytesIO(data[start:stop] + bytes(1024))) as tar:
                    assert sorted(m.name.split(".")[1] for m in tar) == ["cls", "jpg"]
        wids = json.loads((packed / f"{split}.wids.json").read_text())
        assert wids["__kind__"] == "wids-shard-index-v1" and wids["wids_version"] == 1
        assert wids["shardlist"] == [{"url": s["name"], "nsamples": s["num_samples"], "filesize": s["bytes"]}
                                     for s in shards]


def test_verify_names_the_shard_of_a_damaged_index_and_pack_rebuilds_it(packed, source, tmp_path):
    copy = shutil.copytree(packed, tmp_path / "copy")
    index_path = copy / "train-000002.idx"
    record = json.loads(index_path.read_text())
    record["offsets"][1] += 512
    index_path.write_text(json.dumps(record))
    result = run("verify", copy, "--workers", "1", "--quick")
    assert result.exit_code != 0 and "train-000002.tar" in result.output and "sha256" in result.output
    manifest = json.loads((copy / "manifest.json").read_text())  # the manifest agrees: the scan catches it
    manifest["splits"]["train"]["shards"][2]["index_sha256"] = hashlib.sha256(index_path.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = run("verify", copy, "--workers", "1", "--quick")
    assert result.exit_code != 0 and "train-000002.tar" in result.output
    assert "does not match the samples" in result.output and "Traceback" not in result.output
    (copy / "train-000001.idx").unlink()
    result = run("verify", copy, "--workers", "1", "--quick")
    assert result.exit_code != 0 and "train-000001.tar: sample index train-000001.idx unreadable" in result.output
    result = pack(source, copy)  # the same command rebuilds both shards and their indexes
    assert reused(result.stdout)["train"] == len(list(packed.glob("train-*.tar"))) - 2
    assert {p.name: p.read_bytes() for p in copy.glob("*.idx")} == {p.name: p.read_bytes() for p in packed.glob("*.idx")}
    assert run("verify", copy, "--workers", "1", "--quick").exit_code == 0


def test_timm_reads_the_shards(packed):
    reader_wds = pytest.importorskip("timm.data.readers.reader_wds")
    reader = reader_wds.ReaderWds(str(packed), split="val", is_training=False)
    targets = [int(target) for _, target in reader]
    assert len(reader) == 6 and sorted(targets) == [0, 0, 1, 1, 2, 2]


def test_same_input_gives_identical_shards(packed, source, tmp_path):
    pack(source, tmp_path, "--workers", "2")  # the later --workers wins: also checks the pool
    assert shard_shas(tmp_path) == shard_shas(packed)
    assert (tmp_path / "manifest.json").read_text().replace(str(tmp_path), "") == \
        (packed / "manifest.json").read_text().replace(str(packed), "")
    pack(source, tmp_path / "seed1", "--seed", "1")
    assert shard_shas(tmp_path / "seed1") != shard_shas(packed)


def test_resume_after_kill_redoes_only_missing_shards(packed, source, tmp_path):
    command = [sys.executable, "-m", "pack", "imagenet", str(source), "--out", str(tmp_path), *ARGS]
    crashed = subprocess.run(command, env={**os.environ, CRASH_ENV: "3"}, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 137, crashed.stderr
    assert not (tmp_path / "manifest.json").exists()
    assert list(tmp_path.glob(".train-000003.tar.tmp-*")), "the kill leaves a half-written shard"
    done = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.tar")}
    assert sorted(done) == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    (tmp_path / "train-000001.tar").write_bytes(b"torn")  # damage one finished shard as well

    result = pack(source, tmp_path)
    assert reused(result.stdout) == {"train": 2, "val": 0}
    assert shard_shas(tmp_path) == shard_shas(packed)
    for name in ("train-000000.tar", "train-000002.tar"):
        assert (tmp_path / name).stat().st_mtime_ns == done[name], f"{name} was rebuilt"
    assert not list(tmp_path.glob(".*.tmp-*")) and not list(tmp_path.glob(".*.tmp"))
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.idx")} == \
        {p.name: p.read_bytes() for p in packed.glob("*.idx")}
    assert json.loads((tmp_path / "manifest.json").read_text())["rejected"] == \
        json.loads((packed / "manifest.json").read_text())["rejected"]


def test_verify_names_a_shard_with_a_flipped_byte(packed, source, tmp_path):
    assert run("verify", packed, "--workers", "1").exit_code == 0
    copy = tmp_path / "copy"
    shutil.copytree(packed, copy)
    with tarfile.open(copy / "train-000001.tar") as tar:
        offset = next(m for m in tar if m.name.endswith(".jpg")).offset_data + 200
    with open(copy / "train-000001.tar", "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    for extra in ([], ["--quick"]):
        result = run("verify", copy, "--workers", "2", *extra)
        assert result.exit_code != 0 and "train-000001.tar" in result.output and "sha256" in result.output
        assert "Traceback" not in result.output
    result = pack(source, copy)  # the same command rebuilds just that shard
    assert reused(result.stdout) == {"train": len(list(packed.glob("train-*.tar"))) - 1, "val": 2}
    assert shard_shas(copy) == shard_shas(packed)
    assert run("verify", copy, "--workers", "1").exit_code == 0


def test_verify_catches_undecodable_image(tmp_path):
    src = tmp_path / "src"
    good_tree(src, CLASSES[:1], {"val": 2}, SIZE)
    out = tmp_path / "out"
    pack(src, out, "--splits", "val")
    manifest = json.loads((out / "manifest.json").read_text())
    tar_path = out / "val-000000.tar"
    with tarfile.open(tar_path) as tar:
        member = next(m for m in tar if m.name.endswith(".jpg"))
    data = bytearray(tar_path.read_bytes())
    data[member.offset_data:member.offset_data + 4] = b"XXXX"  # no longer a JPEG
    tar_path.write_bytes(bytes(data))
    shard = manifest["splits"]["val"]["shards"][0]
    shard["sha256"] = hashlib.sha256(bytes(data)).hexdigest()  # pretend the manifest agrees
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert run("verify", out, "--quick").exit_code == 0
    result = run("verify", out, "--workers", "1")
    assert result.exit_code != 0 and "val-000000.tar" in result.output and "decode" in result.output


def _flat_val(tmp_path: Path) -> tuple[Path, list[str]]:
    src = tmp_path / "src"
    good_tree(src, CLASSES, {"train": 1}, SIZE)
    rng = np.random.default_rng(2)
    labels = [CLASSES[i % 3] for i in (2, 0, 1, 1, 2)]
    for i in range(len(labels)):
        write(src / "val" / f"ILSVRC2012_val_{i + 1:08d}.JPEG", encode(photo_like(*SIZE, rng)))
    write(src / "val" / "._ILSVRC2012_val_00000001.JPEG", b"mac resource fork")
    return src, labels


def _val_labels(out: Path) -> dict[str, int]:
    return {s["__key__"]: int(s["cls"]) for s in samples(out, "val")}


def test_flat_val_with_kaggle_solution_csv(tmp_path):
    src, labels = _flat_val(tmp_path)
    csv = tmp_path / "LOC_val_solution.csv"
    rows = [f"ILSVRC2012_val_{i + 1:08d},{s} 1 2 30 40 {s} 5 6 7 8" for i, s in enumerate(labels)]
    csv.write_text("ImageId,PredictionString\n" + "\n".join(rows[::-1]) + "\n")
    names = tmp_path / "LOC_synset_mapping.txt"
    names.write_text("".join(f"{s} class {s[-1]}, alias\n" for s in CLASSES))
    pack(src, tmp_path / "out", "--val-labels", csv, "--synset-names", names)
    assert _val_labels(tmp_path / "out") == {f"ILSVRC2012_val_{i + 1:08d}": CLASSES.index(s)
                                             for i, s in enumerate(labels)}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["class_names"]["n01000001"] == "class 1, alias"
    assert manifest["skipped"]["val"] == [{"file": "val/._ILSVRC2012_val_00000001.JPEG",
                                           "reason": "hidden file"}]


def test_flat_val_with_devkit_ground_truth(tmp_path):
    src, labels = _flat_val(tmp_path)
    ilsvrc_order = [CLASSES[1], CLASSES[2], CLASSES[0]]  # the devkit's ids are not sorted order
    synsets = tmp_path / "synset_words.txt"
    synsets.write_text("".join(f"{s} words, more words\n" for s in ilsvrc_order))
    truth = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    truth.write_text("".join(f"{ilsvrc_order.index(s) + 1}\n" for s in labels))
    pack(src, tmp_path / "out", "--splits", "val", "--val-labels", truth, "--val-synsets", synsets)
    assert sorted(_val_labels(tmp_path / "out").values()) == sorted(CLASSES.index(s) for s in labels)
    result = run("imagenet", src, "--out", tmp_path / "o2", "--val-labels", truth, *ARGS)
    assert result.exit_code == 1 and "--val-synsets" in result.output


def test_flat_val_without_labels_says_what_to_pass(tmp_path):
    src, _ = _flat_val(tmp_path)
    result = run("imagenet", src, "--out", tmp_path / "out", *ARGS)
    assert result.exit_code == 1 and "--val-labels" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_source_names_both_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("imagenet", "--out", "shards/", env={"IMAGENET_DIR": None})
    assert result.exit_code == 1
    assert "$IMAGENET_DIR" in result.output and "./ImageNet2012" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_strict_fails_without_publishing(source, tmp_path):
    result = run("imagenet", source, "--out", tmp_path, *ARGS, "--strict")
    assert result.exit_code == 1 and "--strict" in result.output and "3 file(s) rejected" in result.output
    assert not (tmp_path / "manifest.json").exists()


def test_all_rejected_split_fails(tmp_path):
    src = tmp_path / "src"
    good_tree(src, CLASSES[:1], {"train": 1}, SIZE)
    write(src / "val" / CLASSES[0] / "broken.JPEG", b"\xff\xd8\xff\xe0 cut off")
    result = run("imagenet", src, "--out", tmp_path / "out", *ARGS)
    assert result.exit_code == 1 and "split val has no usable images" in result.output
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_resize_caps_the_short_side(source, tmp_path):
    pack(source, tmp_path, "--splits", "val", "--resize", "24")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stats"]["val"]["resized"] == 6 and manifest["settings"]["resize"] == 24
    packed = [s["jpg"] for s in samples(tmp_path, "val")]
    assert {Image.open(io.BytesIO(jpg)).size for jpg in packed} == {(30, 24)}
    # re-encoded with a restart marker after every MCU, for the loader's region decoder
    assert all(b"\xff\xdd\x00\x04\x00\x01" in jpg for jpg in packed)


def test_without_restart_markers_originals_are_stored_byte_for_byte(source, tmp_path):
    pack(source, tmp_path, "--splits", "val", "--no-restart-markers")
    stored = {s["__key__"]: s["jpg"] for s in samples(tmp_path, "val")}
    originals = {p.stem: p.read_bytes() for p in (source / "val").rglob("*.JPEG")}
    assert stored and all(stored[key] == originals[key] for key in stored)
    settings = json.loads((tmp_path / "manifest.json").read_text())["settings"]
    assert settings["restart_interval"] == 0 and settings["restart_transcoder"] is None


def test_restart_coding_keeps_pixels_and_metadata_and_leaves_damage_alone():
    image = photo_like(90, 70, np.random.default_rng(6))
    exif = Image.Exif()
    exif[0x010E] = "a description"  # ImageDescription
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes(), comment=b"kept comment")
    original = out.getvalue()
    coded = images.restart_coded(original, 1)
    assert RESTART_EVERY_MCU in coded
    np.testing.assert_array_equal(pixels(coded), pixels(original))
    reopened = Image.open(io.BytesIO(coded))
    assert reopened.getexif()[0x010E] == "a description" and reopened.info["comment"] == b"kept comment"
    assert images.restart_coded(original, 0) is original  # --no-restart-markers
    cut = original[:len(original) * 2 // 3] + b"\xff\xd9"  # whole structure, entropy data cut short
    assert images.restart_coded(cut, 1) is cut  # left for the loader to count, as before


def test_large_images_are_draft_decoded_to_the_same_geometry(tmp_path):
    rng = np.random.default_rng(5)
    write(tmp_path / "val" / "n1" / "big.JPEG", encode(photo_like(200, 160, rng), quality=90))
    pack(tmp_path, tmp_path / "out", "--splits", "val", "--resize", "24")
    (sample,) = samples(tmp_path / "out", "val")
    assert Image.open(io.BytesIO(sample["jpg"])).size == (30, 24)


def test_new_plan_removes_stale_shards_and_out_inside_src_fails(source, tmp_path):
    pack(source, tmp_path, "--splits", "val", "--shard-size", "1")
    assert len(list(tmp_path.glob("val-*.tar"))) == 6
    pack(source, tmp_path, "--splits", "val", "--shard-size", "4")
    assert sorted(p.name for p in tmp_path.glob("val-*.tar")) == ["val-000000.tar", "val-000001.tar"]
    assert sorted(p.name for p in tmp_path.glob(".val-*.json")) == [".val-000000.json", ".val-000001.json"]
    assert sorted(p.name for p in tmp_path.glob("val-*.idx")) == ["val-000000.idx", "val-000001.idx"]
    result = run("imagenet", source, "--out", source / "train" / "shards", *ARGS)
    assert result.exit_code == 1 and "inside" in result.output
    assert not (source / "train" / "shards").exists()


def test_colliding_stems_get_unique_recorded_keys(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("a.b.JPEG", "a_b.JPEG", "a_b.png"):
        fmt = "PNG" if name.endswith("png") else "JPEG"
        write(tmp_path / "train" / "n1" / name, encode(photo_like(*SIZE, rng), fmt))
    split = scan_imagenet(tmp_path, ["train"]).splits["train"]
    keys = [split.key(i) for i in range(len(split.files))]
    assert keys == ["a_b", "a_b_1", "a_b_2"]
    assert [r["file"] for r in split.renamed] == ["train/n1/a_b.JPEG", "train/n1/a_b.png"]


def test_scan_limits_and_unknown_val_synset(tmp_path):
    good_tree(tmp_path, CLASSES[:2], {"train": 3, "val": 1}, (8, 8))
    scan = scan_imagenet(tmp_path, ["train", "val"], per_class_limit=2)
    assert scan.splits["train"].labels.tolist() == [0, 0, 1, 1]
    (tmp_path / "val" / "n09999999").mkdir()
    with pytest.raises(UserError, match="n09999999"):
        scan_imagenet(tmp_path, ["val"])


def test_sniff_checks_structure_cheaply():
    image = photo_like(*SIZE, np.random.default_rng(4))
    restarts = encode(image, quality=90, restart_marker_blocks=1)
    assert sniff_jpeg(restarts).passes_through
    assert sniff_jpeg(restarts[:-2] + b"\xff\xff\xd9").passes_through  # fill bytes before EOI
    assert sniff_jpeg(restarts + b"trailing junk").passes_through
    for broken in (restarts[:-2], restarts[:300], restarts[:2] + b"\xff\xc0\x00"):
        with pytest.raises(BrokenJpeg):
            sniff_jpeg(broken)
    assert sniff_jpeg(encode(image.convert("CMYK"))).describe() == "cmyk jpeg"
