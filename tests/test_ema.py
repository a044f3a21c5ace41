"""EMA of the weights: timm's ModelEmaV3 numbers, fp32 averages under o2, exact resume, zero padding,
and through the trainer: ema_acc1 in metrics, both weights in checkpoints, best.pt's best_source."""
from __future__ import annotations

import json

import pytest
import torch
from test_step import CLASSES, TINY, _batches, _build
from test_train import metrics, train
from torch import nn

from hrnet_fast.device import Device
from hrnet_fast.ema import EMA_WARMUP_POWER, WeightEma, decay_at
from hrnet_fast.models import HRNet, align_model, create_model, official_shapes, padding_is_zero, strip_state_dict
from hrnet_fast.precision import MixedPrecision, param_groups
from hrnet_fast.step import train_step

CPU = Device("cpu")
EPS32 = torch.finfo(torch.float32).eps


def _assert_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], units: float = 4) -> None:
    """Entry by entry within a few fp32 rounding units of the entry's scale."""
    assert got.keys() == want.keys()
    for key, value in want.items():
        if not value.is_floating_point():
            assert torch.equal(got[key], value), key
            continue
        scale = max(float(value.abs().max()), 1.0)
        assert (got[key].float() - value.float()).abs().max() <= units * EPS32 * scale, key


@pytest.mark.parametrize("target", [0.9, 0.999, 0.9998])
def test_decay_is_timms_model_ema_v3_warmup(target):
    from timm.utils.model_ema import ModelEmaV3

    timm_ema = ModelEmaV3(nn.Linear(2, 2), decay=target, use_warmup=True, warmup_power=EMA_WARMUP_POWER)
    steps = [1, 2, 3, 10, 100, 1000, 10_000, 85_000, 1_000_000]
    assert [decay_at(target, n) for n in steps] == [timm_ema.get_decay(n) for n in steps]
    assert decay_at(target, 1) == 0.0 and decay_at(target, 10**9) == target


def test_ema_matches_timms_model_ema_v3_on_the_same_steps():
    """Parameters and BatchNorm statistics averaged, step counters copied, the warm-up's decays."""
    from timm.utils.model_ema import ModelEmaV3

    model, precision, optimizer = _build("fp32")
    ours = WeightEma(model, precision.to_optimizer, decay=0.9)
    theirs = ModelEmaV3(model, decay=0.9, use_warmup=True, warmup_power=EMA_WARMUP_POWER)
    criterion = nn.CrossEntropyLoss()
    for step, (x, y) in enumerate(_batches(4, torch.float32), start=1):
        train_step(model, x, y, criterion, precision, optimizer)
        ours.update(step)
        theirs.update(model, step=step)
    assert any("running_var" in key for key in ours.state_dict())
    _assert_close(ours.state_dict(), theirs.module.state_dict())
    assert not torch.equal(ours.state_dict()["classifier.weight"], model.state_dict()["classifier.weight"])


def test_o2_averages_the_fp32_masters():
    """Under o2 the average follows the fp32 masters, not their fp16 copies, and the module to
    evaluate gets it in its own dtypes."""
    model, precision, optimizer = _build("o2")
    ema = WeightEma(model, precision.to_optimizer, decay=0.9)
    names = [name for name, _ in model.named_parameters()]
    expected: dict[str, torch.Tensor] = {}
    criterion = nn.CrossEntropyLoss()
    for step, (x, y) in enumerate(_batches(3, precision.input_dtype), start=1):
        train_step(model, x, y, criterion, precision, optimizer)
        ema.update(step)
        weight = 1.0 - decay_at(0.9, step)
        for name, master in zip(names, precision.masters):
            expected[name] = master.detach().clone() if step == 1 else expected[name].lerp(master.detach(), weight)
    state = ema.state_dict()
    _assert_close({name: state[name] for name in names}, expected)
    assert all(state[name].dtype == torch.float32 for name in names)
    module = ema.eval_module()
    assert module.classifier.weight.dtype == torch.float16
    assert torch.equal(module.classifier.weight, state["classifier.weight"].half())


def test_a_restored_ema_continues_exactly():
    """What a checkpoint keeps (state_dict) loaded into a fresh EMA: the same averages, bit for bit."""
    model, precision, optimizer = _build("fp32")
    straight = WeightEma(model, precision.to_optimizer, decay=0.95)
    criterion = nn.CrossEntropyLoss()
    resumed: WeightEma | None = None
    for step, (x, y) in enumerate(_batches(5, precision.input_dtype), start=1):
        train_step(model, x, y, criterion, precision, optimizer)
        straight.update(step)
        if resumed is not None:
            resumed.update(step)
        if step == 2:
            resumed = WeightEma(model, precision.to_optimizer, decay=0.95)
            resumed.load_state_dict(straight.state_dict())
    assert resumed is not None
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mode", ["fp32", "o2"])
def test_padding_stays_zero_and_checkpoints_keep_official_shapes(mode):
    torch.manual_seed(0)
    aligned = align_model(HRNet(TINY, CLASSES), 16).to(memory_format=torch.channels_last)
    precision = MixedPrecision(mode, CPU)
    precision.cast_model(aligned)
    to_optimizer = precision.optimizer_params(aligned)
    optimizer = CPU.sgd(param_groups(aligned, to_optimizer, 1e-4, no_wd_norm_bias=True), lr=0.1, momentum=0.9,
                        nesterov=True)
    ema = WeightEma(aligned, to_optimizer, decay=0.9)
    criterion = nn.CrossEntropyLoss()
    for step, (x, y) in enumerate(_batches(3, precision.input_dtype), start=1):
        train_step(aligned, x, y, criterion, precision, optimizer)
        ema.update(step)
    state = ema.state_dict()
    assert official_shapes(aligned) != {k: tuple(v.shape) for k, v in state.items()}  # it really is padded
    assert padding_is_zero(aligned, state) and padding_is_zero(ema.eval_module())
    stripped = strip_state_dict(state, official_shapes(aligned))
    assert {k: tuple(v.shape) for k, v in stripped.items()} == official_shapes(HRNet(TINY, CLASSES))


def test_eval_loads_the_weights_best_source_names(tmp_path):
    from hrnet_fast import checkpoint
    from hrnet_fast.config import resolve
    from hrnet_fast.inference import load_for_inference

    raw = create_model("hrnet_w18_small_v1", num_classes=10).state_dict()
    ema = {**raw, "classifier.bias": raw["classifier.bias"] + 1.0}
    for source, want in (("raw", raw), ("ema", ema)):
        path = tmp_path / f"{source}.pt"
        checkpoint.save_atomic(checkpoint.build(
            model=raw, ema=ema, model_name="hrnet_w18_small_v1", num_classes=10, classes=[], class_names={},
            image_size=32, optimizer={}, precision={}, epoch=1, batch_in_epoch=0, step=1, best_acc1=50.0,
            best_source=source, rng={}, config=resolve({}, 1).to_json()), path)
        loaded = load_for_inference(str(path), None, CPU, "fp32", "off")
        assert torch.equal(loaded.model.classifier.bias, want["classifier.bias"]), source


# ---- through the trainer ------------------------------------------------------------------------
def test_trainer_validates_saves_and_resumes_the_ema(tiny_shards, tmp_path):
    """Straight, and stopped after 30 steps then resumed: the same EMA at the end, bit for bit;
    metrics carry ema_acc1; best.pt names the better weights and eval uses them."""
    from conftest import run_cli

    args = ("--epochs", "2", "--seed", "5", "--precision", "fp32", "--ema-decay", "0.9")
    train(tiny_shards, tmp_path / "straight", *args)
    train(tiny_shards, tmp_path / "resumed", *args, "--stop-step", "30")
    train(tiny_shards, tmp_path / "resumed", *args, "--resume", "auto")
    last = [torch.load(tmp_path / run / "checkpoints/last.pt", weights_only=True) for run in ("straight", "resumed")]
    for key in ("model", "ema"):
        a, b = last[0][key], last[1][key]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), key
    assert not torch.equal(last[0]["ema"]["classifier.weight"], last[0]["model"]["classifier.weight"])

    epochs = [r for r in metrics(tmp_path / "straight") if r["kind"] == "epoch"]
    assert all({"acc1", "acc5", "ema_acc1", "ema_acc5"} <= r.keys() for r in epochs)
    best = torch.load(tmp_path / "straight/checkpoints/best.pt", weights_only=True)
    scores = {"raw": [r["acc1"] for r in epochs], "ema": [r["ema_acc1"] for r in epochs]}
    assert best["best_acc1"] == max(max(s) for s in scores.values())
    assert best["best_acc1"] in scores[best["best_source"]]
    summary = json.loads((tmp_path / "straight/summary.json").read_text())
    assert (summary["best_acc1"], summary["best_source"]) == (best["best_acc1"], best["best_source"])

    # eval of best.pt scores what training measured for the weights best_source names
    result = run_cli("-m", "hrnet_fast", "eval", "--ckpt", str(tmp_path / "straight/checkpoints/best.pt"),
                     "--shards", str(tiny_shards), "--device", "cpu", "--precision", "fp32", "--batch-size", "8",
                     "--workers", "1", "--json")
    assert json.loads(result.stdout.strip().splitlines()[-1])["acc1"] == pytest.approx(best["best_acc1"], abs=0.01)
