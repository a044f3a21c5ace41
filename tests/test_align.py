"""Channel alignment: padded HRNets compute, learn and save what the official ones do.

Exact by construction: every padded entry is 0.0 and stays 0.0, and pad/strip/load are lossless.
Equal up to summation order: the official values. Padding only adds exact zeros to each sum, but
CPU kernels pick their blocking by channel count, so fp32 oneDNN convs may add the same terms in
another order (~1e-7 apart, e.g. a 144->18 vs 144->24 1x1 conv), and bf16 rounding then lands
on the other side now and then. Where the kernels keep the order (amp and o2 at the shapes below)
the tests demand bit equality; elsewhere a rounding-sized tolerance, and a float64 run shows that
the remaining gap shrinks with the precision: it is rounding, not math.

Subjects: hrnet_w18_small_v2, which pads like W18 (18, 36, 72 -> 24, 40, 72 at 8; 32, 48, 80 at
16), and for multi-step training a slim HRNet with W18's branch widths and odd stem, stage-1 and
head widths, so every kind of width gets padded at a fraction of the cost. (hrnet_w18_small_v1's
widths, 16 ... 128, are aligned already.) Training uses 48 px: at 32 px stage 4 is 1x1 and its
BatchNorm sees two values per channel, which turns even float64 rounding into O(1) differences.
"""
from __future__ import annotations

import copy
import io
import dataclasses

import pytest
import timm
import torch
import torch.nn as nn

from hrnet_fast.device import Device
from hrnet_fast.errors import UserError
from hrnet_fast.models import (
    CONFIGS,
    HRNet,
    HRNetConfig,
    align_model,
    aligned_config,
    count_params,
    create_model,
    load_weights,
    official_shapes,
    optimizer_official_shapes,
    pad_optimizer_state,
    pad_state_dict,
    padding_is_zero,
    strip_optimizer_state,
    strip_state_dict,
)
from hrnet_fast.precision import PRECISIONS, MixedPrecision, param_groups

NAME = "hrnet_w18_small_v2"
CLASSES = 10
CPU = Device("cpu")
SLIM = HRNetConfig("slim", layer1_blocks=1, layer1_planes=10, stage_modules=(1, 1, 1), blocks_per_branch=1,
                   branch_channels=(18, 36, 72, 144), stem_channels=20, head_planes=(6, 12, 24, 48), num_features=200)
# largest difference after 3 steps, relative to each tensor's scale. Measured with 1 and 2 threads:
# amp and o2 bitwise; fp32 4e-6 (oneDNN's blocking follows channel counts); bf16 2e-3, a bf16
# ulp (2^-8) of rounding that lands on the other side once a sum is reordered.
TOLERANCE = {"fp32": 1e-4, "amp": 0.0, "bf16": 2e-2, "o2": 0.0}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny, so one thread is as fast as two, and it does not stall when the
    2-core box is busy (two OpenMP threads waiting on a descheduled sibling ran 15x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pairs() -> dict[int, tuple[nn.Module, nn.Module]]:
    """(official, aligned) hrnet_w18_small_v2 created from the same seed, per multiple."""
    models = {}
    for align in (8, 16):
        torch.manual_seed(0)
        official = create_model(NAME, num_classes=CLASSES)
        torch.manual_seed(0)
        models[align] = official, create_model(NAME, num_classes=CLASSES, align=align)
    return models


def _batch(size: int, count: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(1))
    return images, torch.arange(count) * 3 % CLASSES


def _assert_same(expected: dict[str, torch.Tensor], aligned: dict[str, torch.Tensor], model: nn.Module,
                 tol: float = 0.0) -> None:
    """The official slice of every `aligned` entry is within `tol` x the entry's scale of
    `expected` (bitwise when tol is 0). The scale floor covers gradients that are rounding noise
    around an exact 0 (conv biases in front of BatchNorm)."""
    stripped = strip_state_dict({k: aligned[k] for k in expected}, official_shapes(model))
    for key, value in expected.items():
        atol = tol * max(value.abs().max().item(), 1e-3) if value.is_floating_point() else 0.0
        torch.testing.assert_close(stripped[key], value, rtol=0.0, atol=atol, msg=lambda m, key=key: f"{key}: {m}")


# ---- configs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("multiple", [8, 16])
def test_only_branch_widths_need_padding_in_the_zoo(multiple):
    for config in CONFIGS.values():
        rounded = tuple(-(-width // multiple) * multiple for width in config.branch_channels)
        assert aligned_config(config, multiple) == dataclasses.replace(config, branch_channels=rounded)
    with torch.device("meta"):  # every conv width but the 3 input colours is a multiple
        convs = [m for m in create_model("hrnet_w18", align=multiple).modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 3
    assert all(c.out_channels % multiple == 0 and c.in_channels % multiple == 0 for c in convs[1:])


def test_aligned_parameter_counts():
    with torch.device("meta"):
        counts = [count_params(create_model("hrnet_w18", align=align)) for align in (None, 8, 16)]
    assert counts == [21_299_004, 21_805_224, 23_497_192]


def test_bad_alignment_is_a_user_error():
    with pytest.raises(UserError, match="positive whole number"):
        create_model(NAME, align=0)
    with torch.device("meta"):
        with pytest.raises(UserError, match="already aligned"):
            align_model(create_model(NAME, align=8), 16)
        # branch 1 would reach its incre Bottleneck's width (96) and lose that block's shortcut
        custom = dataclasses.replace(SLIM, branch_channels=(90, 180, 360, 720), head_planes=(24, 48, 96, 192))
        with pytest.raises(UserError, match="changes its layers"):
            align_model(HRNet(custom), 8)


# ---- one step -------------------------------------------------------------------------------------
@pytest.mark.parametrize("align", [8, 16])
def test_same_init_same_logits_same_gradients(pairs, align):
    official, aligned = (copy.deepcopy(m) for m in pairs[align])
    assert aligned.official_config == official.config and aligned.align == align
    assert aligned.config.branch_channels != official.config.branch_channels
    _assert_same(official.state_dict(), aligned.state_dict(), aligned)
    x, y = _batch(64)
    logits = [model(x) for model in (official, aligned)]  # train mode: batch statistics
    torch.testing.assert_close(logits[1], logits[0], rtol=0.0, atol=1e-5)
    for model, out in zip((official, aligned), logits):
        nn.functional.cross_entropy(out, y).backward()
    grads = [{k: p.grad for k, p in model.named_parameters()} for model in (official, aligned)]
    _assert_same(grads[0], grads[1], aligned, TOLERANCE["fp32"])
    assert padding_is_zero(aligned, grads[1])
    official.eval(), aligned.eval()
    torch.testing.assert_close(aligned(x), official(x), rtol=0.0, atol=1e-5)


def test_seeded_creation_draws_the_same_random_numbers():
    torch.manual_seed(0)
    create_model("hrnet_w18_small_v1", num_classes=CLASSES)
    after_official = torch.rand(4)
    torch.manual_seed(0)
    create_model("hrnet_w18_small_v1", num_classes=CLASSES, align=16)
    assert torch.equal(torch.rand(4), after_official)


# ---- training -------------------------------------------------------------------------------------
def _slim_pair(align: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    official = HRNet(SLIM, CLASSES)
    return official, align_model(official, align)


def _trainer(model: nn.Module, mode: str):
    """Precision and SGD as the trainer builds them (no decay on BN and biases: reordered params)."""
    precision = MixedPrecision(mode, CPU)
    precision.cast_model(model)
    to_optimizer = precision.optimizer_params(model)
    groups = param_groups(model, to_optimizer, 1e-4, no_wd_norm_bias=True)
    return precision, to_optimizer, CPU.sgd(groups, lr=0.1, momentum=0.9, nesterov=True)


def _train(model: nn.Module, precision: MixedPrecision, optimizer: torch.optim.Optimizer, steps: int) -> None:
    x, y = _batch(48)
    for _ in range(steps):
        with precision.autocast():
            logits = model(x.to(precision.input_dtype))
        precision.backward(nn.functional.cross_entropy(logits.float(), y))
        precision.step(optimizer)
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("mode", PRECISIONS)
def test_training_follows_the_official_run_and_padding_stays_zero(mode):
    official, aligned = _slim_pair(16 if mode in ("fp32", "o2") else 8)  # both multiples, half the cost
    runs = [(model, *_trainer(model, mode)) for model in (official, aligned)]
    for model, precision, _, optimizer in runs:
        _train(model, precision, optimizer, steps=3)
    (_, ref_precision, _, ref_optimizer), (_, precision, to_optimizer, optimizer) = runs
    masters = precision.master_state_dict(aligned)
    assert padding_is_zero(aligned) and padding_is_zero(aligned, masters)
    _assert_same(ref_precision.master_state_dict(official), masters, aligned, TOLERANCE[mode])
    momentum = strip_optimizer_state(optimizer.state_dict(), optimizer_official_shapes(optimizer, aligned, to_optimizer))
    _assert_same({str(i): s["momentum_buffer"] for i, s in ref_optimizer.state_dict()["state"].items()},
                 {str(i): s["momentum_buffer"] for i, s in momentum["state"].items()}, aligned, TOLERANCE[mode])


def test_float64_training_agrees_to_rounding():
    """fp32 above is a few ulps apart; in float64 the gap shrinks with the ulp: it is rounding."""
    models = [model.double() for model in _slim_pair(8)]
    x, y = _batch(48)
    for model in models:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        for _ in range(3):
            nn.functional.cross_entropy(model(x.double()), y).backward()
            optimizer.step()
            optimizer.zero_grad()
    official, aligned = models
    _assert_same(official.state_dict(), aligned.state_dict(), aligned, tol=1e-12)
    assert padding_is_zero(aligned)


def test_resume_from_stripped_checkpoint_continues_exactly():
    """o2: official-shaped weights, masters and momentum go in; the run goes on bit for bit."""
    _, aligned = _slim_pair(8)
    precision, to_optimizer, optimizer = _trainer(aligned, "o2")
    _train(aligned, precision, optimizer, steps=2)
    weights = strip_state_dict(precision.master_state_dict(aligned), official_shapes(aligned))
    momentum = strip_optimizer_state(optimizer.state_dict(), optimizer_official_shapes(optimizer, aligned, to_optimizer))
    assert {k: tuple(v.shape) for k, v in weights.items()} == official_shapes(HRNet(SLIM, CLASSES))

    resumed = align_model(HRNet(SLIM, CLASSES), 8)
    resumed_precision, _, resumed_optimizer = _trainer(resumed, "o2")
    load_weights(resumed, weights)
    resumed_precision.sync_masters_from_model(pad_state_dict(weights, resumed), resumed)
    resumed_optimizer.load_state_dict(pad_optimizer_state(momentum, resumed_optimizer))
    resumed_precision.load_state_dict(precision.state_dict())
    for run in ((aligned, precision, optimizer), (resumed, resumed_precision, resumed_optimizer)):
        _train(*run, steps=1)
    # bitwise in the official slice; padded running_var restarts at 1 (it only ever divides zeros)
    _assert_same(strip_state_dict(aligned.state_dict(), official_shapes(aligned)), resumed.state_dict(), resumed)
    assert padding_is_zero(resumed, resumed_precision.master_state_dict(resumed))


def test_resumed_momentum_is_laid_out_like_its_channels_last_parameter():
    """Fused CUDA SGD refuses momentum whose strides differ from its parameter's; a checkpoint's
    buffers come back contiguous and padded, the parameters are channels_last."""
    def build() -> tuple[nn.Module, torch.optim.Optimizer]:
        model = align_model(HRNet(SLIM, CLASSES), 8).to(memory_format=torch.channels_last)
        return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    model, optimizer = build()
    for param in model.parameters():
        optimizer.state[param]["momentum_buffer"] = torch.randn_like(param)
    saved = io.BytesIO()
    torch.save(strip_optimizer_state(optimizer.state_dict(), optimizer_official_shapes(optimizer, model)), saved)
    saved.seek(0)
    momentum = torch.load(saved, weights_only=True)

    resumed, resumed_optimizer = build()
    resumed_optimizer.load_state_dict(pad_optimizer_state(momentum, resumed_optimizer))
    assert any(p.dim() == 4 and p.stride()[1] == 1 < p.shape[1] for p in resumed.parameters())
    for param in resumed.parameters():
        assert resumed_optimizer.state[param]["momentum_buffer"].stride() == param.stride()
    again = strip_optimizer_state(resumed_optimizer.state_dict(), optimizer_official_shapes(resumed_optimizer, resumed))
    for index, entries in momentum["state"].items():
        assert torch.equal(again["state"][index]["momentum_buffer"], entries["momentum_buffer"])


# ---- weights in and out ---------------------------------------------------------------------------
def test_stripped_weights_load_strictly_into_unaligned_and_timm_and_back(pairs):
    _, aligned = (copy.deepcopy(m) for m in pairs[8])
    x, _ = _batch(64)
    with torch.no_grad():
        aligned(x)  # train-mode forward: BN running statistics that eval will use
    aligned.eval()
    state = strip_state_dict(aligned.state_dict(), official_shapes(aligned))
    official = create_model(NAME, num_classes=CLASSES).eval()
    official.load_state_dict(state, strict=True)
    theirs = timm.create_model(NAME, pretrained=False, num_classes=CLASSES).eval()
    theirs.load_state_dict(state, strict=True)
    again = create_model(NAME, num_classes=CLASSES, align=16).eval()
    load_weights(again, theirs.state_dict())
    with torch.no_grad():
        logits = official(x)  # same shapes, same kernels: bitwise
        assert torch.equal(theirs(x), logits)
        torch.testing.assert_close(aligned(x), logits, rtol=0.0, atol=1e-5)
        torch.testing.assert_close(again(x), logits, rtol=0.0, atol=1e-5)


def test_pad_then_strip_is_identity_and_pads_bn_as_identity(pairs):
    official, aligned = pairs[16]
    state = official.state_dict()
    padded = pad_state_dict(state, aligned)
    assert {k: v.shape for k, v in padded.items()} == {k: v.shape for k, v in aligned.state_dict().items()}
    bn = "stage2.0.branches.0.0.bn1"  # 18 official channels of 32
    assert torch.equal(padded[f"{bn}.running_var"][18:], torch.ones(14))
    assert not padded[f"{bn}.weight"][18:].any() and not padded[f"{bn}.running_mean"][18:].any()
    assert torch.equal(padded[f"{bn}.num_batches_tracked"], state[f"{bn}.num_batches_tracked"])
    stripped = strip_state_dict(padded, official_shapes(aligned))
    assert all(torch.equal(stripped[k], v) and stripped[k].dtype == v.dtype for k, v in state.items())
    conv = stripped["stage2.0.branches.0.0.conv1.weight"]  # a compact copy: torch.save writes 18x18, not 32x32
    assert conv.untyped_storage().nbytes() == conv.numel() * conv.element_size()


def test_weight_errors_name_the_official_shapes_on_aligned_models(pairs):
    _, aligned = pairs[8]
    with torch.device("meta"):
        other_classes = create_model(NAME, num_classes=5).state_dict()
        other_model = create_model("hrnet_w18_small_v1", num_classes=CLASSES).state_dict()
    with pytest.raises(UserError, match=f"checkpoint has 5 classes, model has {CLASSES}"):
        load_weights(aligned, other_classes)
    with pytest.raises(UserError, match="looks like hrnet_w18_small_v1"):
        load_weights(aligned, other_model)
