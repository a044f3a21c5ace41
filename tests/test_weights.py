"""Checkpoint reading and loading: every layout we accept, every bad file refused with its fix."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from hrnet_fast.errors import UserError
from hrnet_fast.models import create_model, guess_model_name, load_weights, read_state_dict

pytestmark = pytest.mark.numerics

SMALL = "hrnet_w18_small_v1"


class CustomRecord:
    """An object of a project class: pickling stores a reference to code."""


class RunsCode:
    """Unpickling this would create a directory: proof that loading executed code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return create_model(SMALL, num_classes=10).state_dict()


def _saved(tmp_path: Path, obj: object, name: str = "ckpt.pt") -> Path:
    path = tmp_path / name
    torch.save(obj, path)
    return path


def _equal_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    loaded = model.state_dict()
    return all(torch.equal(loaded[k], v) for k, v in state.items())


def test_plain_state_dict_round_trip_loads_strictly(tmp_path, small_state):
    path = _saved(tmp_path, small_state)
    state, meta = read_state_dict(path)
    assert meta == {} and list(state) == list(small_state)
    model = create_model(SMALL, num_classes=10, pretrained=str(path))
    assert _equal_weights(model, small_state)


def test_our_checkpoint_returns_its_other_entries_as_meta(tmp_path, small_state):
    checkpoint = {"model": small_state, "model_name": SMALL, "classes": ["a"] * 10, "config": {"lr": 0.1}, "epoch": 3}
    state, meta = read_state_dict(_saved(tmp_path, checkpoint))
    assert meta == {"model_name": SMALL, "classes": ["a"] * 10, "config": {"lr": 0.1}, "epoch": 3}
    model = create_model(SMALL, num_classes=10)
    assert load_weights(model, _saved(tmp_path, checkpoint, "again.pt"))["epoch"] == 3
    assert _equal_weights(model, small_state)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_ddp_and_compile_prefixes_are_stripped(tmp_path, small_state, prefix):
    wrapped = {"state_dict": {prefix + k: v for k, v in small_state.items()}, "arch": SMALL}  # timm style
    state, meta = read_state_dict(_saved(tmp_path, wrapped))
    assert list(state) == list(small_state) and meta == {"arch": SMALL}
    model = create_model(SMALL, num_classes=10)
    load_weights(model, {prefix + k: v for k, v in small_state.items()})  # in-memory dicts too
    assert _equal_weights(model, small_state)


def test_checkpoint_without_bn_step_counters_loads(small_state):
    old = {k: v for k, v in small_state.items() if not k.endswith("num_batches_tracked")}  # pre-0.4.1 files
    model = create_model(SMALL, num_classes=10)
    load_weights(model, old)
    assert _equal_weights(model, old)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match=r"checkpoint .*nope\.pt not found: check the path"):
        read_state_dict(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="is a directory: pass the checkpoint file"):
        read_state_dict(tmp_path)


@pytest.mark.parametrize("content", [os.urandom(4096), b"epoch,loss\n1,0.5\n", b""], ids=["random", "text", "empty"])
def test_non_torch_files_are_refused(tmp_path, content):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(UserError, match="is not a PyTorch checkpoint or is damaged .*: pass a file written by torch.save"):
        read_state_dict(path)


@pytest.mark.parametrize(("obj", "culprit"), [
    (nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),
    ({"model": {}, "extra": CustomRecord()}, "CustomRecord"),
])
def test_files_that_need_code_to_load_are_refused(tmp_path, obj, culprit):
    refusal = rf"not a plain weights file; it would run code when loaded \(it pickles .*{culprit}\)"
    with pytest.raises(UserError, match=refusal):
        read_state_dict(_saved(tmp_path, obj))


def test_refused_file_does_not_run_its_code(tmp_path):
    marker = tmp_path / "was-executed"
    path = _saved(tmp_path, {"model": RunsCode(marker)})
    with pytest.raises(UserError, match="would run code when loaded"):
        read_state_dict(path)
    assert not marker.exists()


def test_files_without_a_state_dict_are_refused(tmp_path):
    with pytest.raises(UserError, match="holds a list, not a state dict"):
        read_state_dict(_saved(tmp_path, [torch.zeros(1)]))
    with pytest.raises(UserError, match=r"has no state dict \(top-level keys: epoch, lr\)"):
        read_state_dict(_saved(tmp_path, {"epoch": 1, "lr": 0.1}, "b.pt"))


def test_wrong_class_count_says_how_many(small_state):
    model = create_model(SMALL, num_classes=5)
    with pytest.raises(UserError, match=r"^checkpoint has 10 classes, model has 5: pass --num-classes 10"):
        load_weights(model, small_state)


def test_wrong_model_names_the_checkpoints_model(small_state):
    assert guess_model_name(small_state) == SMALL
    model = create_model("hrnet_w18_small_v2", num_classes=10)
    hint = rf"checkpoint looks like {SMALL}: wrong --model\? pass --model {SMALL} \(\d+ missing: "
    with pytest.raises(UserError, match=hint):
        load_weights(model, small_state)


def test_missing_and_unexpected_keys_are_named(small_state):
    model = create_model(SMALL, num_classes=10)
    partial = {k: v for k, v in small_state.items() if k != "final_layer.0.bias"}
    with pytest.raises(UserError, match=r"weights do not fit hrnet_w18_small_v1: 1 missing: final_layer\.0\.bias$"):
        load_weights(model, partial)
    load_weights(model, partial, strict=False)  # non-strict accepts it
    extra = dict(small_state, **{"head.fc.weight": torch.zeros(1)})
    with pytest.raises(UserError, match=r"1 unexpected: head\.fc\.weight"):
        load_weights(model, extra)


def test_foreign_checkpoint_is_not_mistaken_for_hrnet():
    model = create_model(SMALL, num_classes=10)
    resnet_like = {"fc.weight": torch.zeros(10, 512), "layer4.0.conv1.weight": torch.zeros(512, 256, 3, 3)}
    with pytest.raises(UserError, match="no key in common, not an HRNet classification checkpoint"):
        load_weights(model, resnet_like)
