"""The checkpoint schema: one builder, one validator with one-line errors; the format stays loadable."""
from pathlib import Path

import pytest
import torch

from hrnet_fast import checkpoint
from hrnet_fast.config import resolve
from hrnet_fast.errors import UserError


def built(**changes) -> dict:
    parts = dict(model={"classifier.weight": torch.zeros(10, 4)}, ema=None, model_name="hrnet_w18_small_v1",
                 num_classes=10, classes=[f"n{i}" for i in range(10)], class_names={"n0": "zero"}, image_size=32,
                 optimizer={"state": {}, "param_groups": []}, precision={"name": "fp32"}, epoch=1, batch_in_epoch=0,
                 step=25, best_acc1=12.5, best_source="raw", rng=checkpoint.rng_state(), config=resolve({}, 1).to_json())
    return checkpoint.build(**{**parts, **changes})


def saved(tmp_path: Path, ckpt: object) -> Path:
    path = tmp_path / "last.pt"
    checkpoint.save_atomic(ckpt, path)
    return path


def test_a_built_checkpoint_loads_weights_only_and_validates(tmp_path):
    path = saved(tmp_path, built())
    plain = torch.load(path, weights_only=True)
    assert list(plain) == list(checkpoint.SCHEMA)  # every entry, in the on-disk order
    assert (plain["format"], plain["version"]) == ("hrnet-fast-checkpoint", 1)
    assert checkpoint.load(path)["step"] == 25 and checkpoint.read_config(path)["recipe"] == "reference"


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("optimizer"), r"lacks optimizer.*resume from another checkpoint"),
    (lambda c: c.update(epoch="1"), r"damaged or not written by hrnet-fast \(epoch is str\)"),
    (lambda c: c.update(version=2), r"version 2, newer than .*upgrade hrnet-fast"),
    (lambda c: c.update(format="other-tool"), r"not an hrnet-fast checkpoint"),
    (lambda c: c.pop("epoch"), r"weights file, not a training checkpoint"),
])
def test_bad_checkpoints_are_refused_in_one_line(tmp_path, change, message):
    ckpt = built()
    change(ckpt)
    path = saved(tmp_path, ckpt)
    for read in (checkpoint.load, checkpoint.read_config):
        with pytest.raises(UserError, match=message) as caught:
            read(path)
        assert "\n" not in str(caught.value)


def test_inference_reads_others_files_and_checks_ours():
    timm_like = {"epoch": 3, "arch": "hrnet_w18", "version": 2}  # timm's own version field
    checkpoint.check_entries(timm_like, Path("timm.pth"), checkpoint.INFERENCE_KEYS)
    with pytest.raises(UserError, match=r"image_size is list"):
        checkpoint.check_entries({"image_size": [224, 224]}, Path("x.pt"), checkpoint.INFERENCE_KEYS)


def test_best_source_must_name_weights_the_checkpoint_holds():
    ema = {"classifier.weight": torch.ones(10, 4)}
    assert built(ema=ema, best_source="ema")["ema"] is ema
    for wrong in (dict(best_source="ema"), dict(ema=ema, best_source="average")):
        with pytest.raises(ValueError, match="best_source"):
            built(**wrong)
