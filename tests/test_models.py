"""The HRNet zoo: reference sizes and keys, any input size, layouts, gradients, timm equivalence, CLI."""
from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn as nn
from click.testing import CliRunner

from hrnet_fast.cli import cli
from hrnet_fast.errors import UserError
from hrnet_fast.models import MODEL_NAMES, HRNetConfig, count_params, create_model, get_config, measure

# HRNet-Image-Classification README (commit f760c98), millions of parameters at 1000 classes
PAPER_PARAMS_M = {
    "hrnet_w18_small_v1": 13.2, "hrnet_w18_small_v2": 15.6, "hrnet_w18": 21.3, "hrnet_w30": 37.7,
    "hrnet_w32": 41.2, "hrnet_w40": 57.6, "hrnet_w44": 67.1, "hrnet_w48": 77.5, "hrnet_w64": 128.1,
}
TIMM_NAME = {"hrnet_w18_small_v1": "hrnet_w18_small"}  # timm names the others like we do
OFFICIAL_TOP_LEVEL = {
    "conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "transition2", "transition3",
    "stage2", "stage3", "stage4", "incre_modules", "downsamp_modules", "final_layer", "classifier",
}
SMALL = "hrnet_w18_small_v1"


def _meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_zoo_lists_the_nine_reference_configs_in_order():
    assert MODEL_NAMES == tuple(PAPER_PARAMS_M)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_count_matches_paper(name):
    assert round(count_params(_meta_model(name)) / 1e6, 1) == PAPER_PARAMS_M[name]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_state_dict_keys_and_shapes_equal_timm_and_official(name):
    with torch.device("meta"):
        reference = timm.create_model(TIMM_NAME.get(name, name), pretrained=False)
    ours = _meta_model(name)
    assert _shapes(ours) == _shapes(reference)
    keys = ours.state_dict().keys()
    assert {k.split(".")[0] for k in keys} == OFFICIAL_TOP_LEVEL
    assert "downsamp_modules.0.0.bias" in keys and "final_layer.0.bias" in keys  # head convs have biases


def test_branch_widths_come_from_the_config():
    config = get_config("hrnet_w32")
    assert isinstance(config, HRNetConfig) and config.branch_channels == (32, 64, 128, 256)
    model = _meta_model("hrnet_w32")
    assert model.arch == "hrnet_w32" and model.config == config and model.num_classes == 1000
    assert model.state_dict()["transition3.3.0.0.weight"].shape[0] == 256
    assert config.to_dict()["branch_channels"] == (32, 64, 128, 256)


def test_bad_name_or_class_count_is_a_user_error():
    with pytest.raises(UserError, match="unknown model 'hrnet_w99': choose one of hrnet_w18_small_v1"):
        create_model("hrnet_w99")
    with pytest.raises(UserError, match="--num-classes must be at least 1"):
        create_model(SMALL, num_classes=0)


def test_init_follows_the_reference():
    model = create_model(SMALL)
    conv = model.stage4[0].branches[3][0].conv1  # 128 -> 128, 3x3: enough samples for a std estimate
    expected_std = (2.0 / (conv.out_channels * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize(("size", "classes"), [(32, 1000), (33, 10), (64, 3), ((45, 61), 1), ((97, 50), 7)])
def test_any_input_size_and_class_count(size, classes):
    height, width = size if isinstance(size, tuple) else (size, size)
    model = create_model(SMALL, num_classes=classes).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, height, width))
        features = model.forward_features(torch.randn(1, 3, height, width))
    assert logits.shape == (2, classes) and torch.isfinite(logits).all()
    assert features.shape == (1, 2048, -(-height // 32), -(-width // 32))  # stride-2 convs round up


def test_forward_is_forward_head_of_forward_features_as_in_timm():
    model = create_model(SMALL, num_classes=5).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
        expected = model(x)
    assert features.shape == (2, 2048, 2, 3)
    assert pooled.shape == (2, 2048)
    torch.testing.assert_close(pooled, features.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, model.classifier(pooled))
    torch.testing.assert_close(expected, logits)


def test_channels_last_matches_contiguous_and_stays_channels_last():
    torch.manual_seed(0)
    model = create_model(SMALL, num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        layouts = []
        hooks = [
            m.register_forward_pre_hook(
                lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
            for m in model.modules() if isinstance(m, nn.Conv2d)
        ]
        got = model(x.contiguous(memory_format=torch.channels_last))
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert len(layouts) == len(hooks) and all(layouts), "a layer turned channels_last activations into NCHW"


def test_forward_runs_on_meta_device_so_it_never_syncs_with_the_host():
    model = _meta_model(SMALL, num_classes=5).train()
    logits = model(torch.empty(2, 3, 64, 64, device="meta"))  # .item() or bool(tensor) would raise here
    assert logits.shape == (2, 5) and logits.is_meta


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = create_model(SMALL, num_classes=4).train()
    loss = nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([1, 3]))
    loss.backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not without_grad
    assert model.classifier.weight.grad.abs().sum() > 0 and model.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "size"), [(SMALL, 224), (SMALL, 64), ("hrnet_w18_small_v2", 64), ("hrnet_w18", 64)])
def test_identical_to_timm_both_directions(name, size):
    torch.manual_seed(0)
    theirs = timm.create_model(TIMM_NAME.get(name, name), pretrained=False).eval()
    ours = create_model(name).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    torch.manual_seed(1)
    ours = create_model(name).eval()  # fresh weights the other way round
    theirs.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(theirs(x), ours(x))


def test_measure_counts_multiply_adds_like_the_paper():
    params, macs = measure("hrnet_w18")
    assert params == 21_299_004
    assert round(macs / 2**30, 2) == 3.99  # the paper's "3.99 GFLOPs" are multiply-adds in 2^30 units
    assert measure(SMALL, image_size=33)[1] < measure(SMALL, image_size=64)[1]


def test_models_command_prints_every_config():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["model", "params", "(M)", "GMACs", "GFLOPs", "GFLOPs(paper)"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:10]}
    assert list(rows) == list(MODEL_NAMES)
    assert {name: float(cols[0]) for name, cols in rows.items()} == PAPER_PARAMS_M
    assert rows["hrnet_w18"][1:] == ["4.28", "8.57", "3.99"]
    assert "paper" in lines[-1] and "2^30" in lines[-1]


def test_models_command_json():
    result = CliRunner().invoke(cli, ["models", "--json", "--image-size", "64"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    assert report["image_size"] == 64
    assert [row["model"] for row in report["models"]] == list(MODEL_NAMES)
    assert all(row["flops"] == 2 * row["macs"] > 0 for row in report["models"])
    assert report["models"][2]["params"] == 21_299_004


def test_models_command_reports_the_aligned_sizes():
    result = CliRunner().invoke(cli, ["models", "--json", "--image-size", "64", "--align-channels", "8"])
    assert result.exit_code == 0, result.output
    rows = {row["model"]: row for row in json.loads(result.output.strip().splitlines()[-1])["models"]}
    w18 = rows["hrnet_w18"]
    assert w18["aligned_branch_channels"] == [24, 40, 72, 144]
    aligned = create_model("hrnet_w18", align=8)
    assert w18["aligned_params"] == count_params(aligned) > w18["params"]
    assert w18["aligned_macs"] > w18["macs"]
    small = rows["hrnet_w18_small_v1"]  # 16/32/64/128: aligned already, nothing changes
    assert (small["aligned_params"], small["aligned_macs"]) == (small["params"], small["macs"])
