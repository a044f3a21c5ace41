"""`hrnet-fast eval` and `predict`: exact counts on 1 and 2 processes, state dicts, clear errors."""
import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from hrnet_fast.models import create_model

MODEL = "hrnet_w18_small_v1"


def manifest(shards: Path) -> dict:
    return json.loads((shards / "manifest.json").read_text())


@pytest.fixture(scope="module")
def plain_state_dict(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "plain.pth"
    torch.save(create_model(MODEL, num_classes=10).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def our_checkpoint(tmp_path_factory, plain_state_dict, tiny_shards) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    classes = manifest(tiny_shards)["classes"]
    torch.save({"model": torch.load(plain_state_dict, weights_only=True), "model_name": MODEL,
                "classes": classes, "class_names": {c: f"name of {c}" for c in classes},
                "image_size": 32, "epoch": 1}, path)
    return path


def eval_json(*args: str) -> dict:
    result = run_cli(*args)
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("Acc@1 ") and " images " in lines[-2]
    return json.loads(lines[-1])


def test_eval_counts_every_val_image_once_on_one_and_two_processes(tiny_shards, our_checkpoint, tmp_path):
    total = manifest(tiny_shards)["splits"]["val"]["num_samples"]
    assert total % (2 * 8) != 0  # the awkward case: padding on the last batches
    common = ["--ckpt", str(our_checkpoint), "--shards", str(tiny_shards), "--batch-size", "8",
              "--workers", "1", "--device", "cpu", "--json"]
    one = eval_json("-m", "hrnet_fast", "eval", *common, "--save-predictions", str(tmp_path / "one.csv"))
    two = eval_json("-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
                    "-m", "hrnet_fast", "eval", *common, "--save-predictions", str(tmp_path / "two.csv"))
    assert one["images"] == two["images"] == total
    assert one["acc1"] == two["acc1"] and one["acc5"] == two["acc5"]
    rows = list(csv.DictReader((tmp_path / "one.csv").open()))
    assert list(rows[0]) == ["key", "label", "top1", "top5"] and len(rows) == total
    assert len({r["key"] for r in rows}) == total and all(len(r["top5"].split()) == 5 for r in rows)
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "two.csv").read_text()
    correct = sum(r["label"] == r["top1"] for r in rows)
    assert one["acc1"] == pytest.approx(100 * correct / total, abs=1e-3)


def test_eval_of_a_plain_state_dict_needs_the_model_name(tiny_shards, plain_state_dict):
    common = ["-m", "hrnet_fast", "eval", "--ckpt", str(plain_state_dict), "--shards", str(tiny_shards),
              "--workers", "0", "--device", "cpu", "--image-size", "32"]
    missing = run_cli(*common, check=False)
    assert missing.returncode != 0 and "--model" in missing.stderr and "Traceback" not in missing.stderr
    result = eval_json(*common, "--model", MODEL, "--json")
    assert result["images"] == manifest(tiny_shards)["splits"]["val"]["num_samples"]


def test_eval_refuses_a_class_count_mismatch(tiny_shards, tmp_path):
    path = tmp_path / "hundred.pth"
    torch.save(create_model(MODEL, num_classes=100).state_dict(), path)
    result = run_cli("-m", "hrnet_fast", "eval", "--ckpt", str(path), "--model", MODEL, "--shards",
                     str(tiny_shards), "--device", "cpu", check=False)
    assert result.returncode != 0 and "100 classes" in result.stderr and "Traceback" not in result.stderr


def test_eval_with_a_wrong_path_is_one_line(tiny_shards, tmp_path):
    result = run_cli("-m", "hrnet_fast", "eval", "--ckpt", str(tmp_path / "none.pt"), "--shards",
                     str(tiny_shards), check=False)
    assert result.returncode != 0 and "not found" in result.stderr and "Traceback" not in result.stderr


def test_predict_names_the_top_classes(digits_tree, our_checkpoint):
    images = sorted((digits_tree / "val" / "digit3").glob("*.JPEG"))[:2]
    result = run_cli("-m", "hrnet_fast", "predict", "--ckpt", str(our_checkpoint), "--topk", "3",
                     "--device", "cpu", "--json", *map(str, images))
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["image"] for r in rows] == [str(p) for p in images]
    for row in rows:
        assert len(row["top"]) == 3
        assert sum(t["prob"] for t in row["top"]) <= 1.0 + 1e-4
        assert all(t["name"] == f"name of {t['synset']}" for t in row["top"])
    text = run_cli("-m", "hrnet_fast", "predict", "--ckpt", str(our_checkpoint), "--device", "cpu",
                   str(images[0]), "/nonexistent.jpg", check=False)
    assert text.returncode != 0 and "1. " in text.stdout and "/nonexistent.jpg" in text.stderr
