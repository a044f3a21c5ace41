"""Channel alignment: padded HRNets compute, learn and save what the official ones do.

What the construction guarantees, and so what holds on every CPU, ISA and thread count:
- exact: every padded entry is 0.0 and stays 0.0 in every precision; pad/strip/load round-trip
  bit for bit; the same shapes through the same kernels give the same bits.
- equal up to rounding: padding only adds exact zeros to each sum, but kernels pick their
  blocking (and so their summation order) by channel count, so official and aligned values
  differ by rounding. Forward values are continuous in their inputs, so the gap is bounded by
  the compute dtype's epsilon times the tensor's scale times the network's error growth
  (`_rounding_tolerance`). Gradients are not: a ReLU input within rounding of 0 takes the other
  branch, and one fp32 gradient row moved by 15 % on one kernel path here. So gradients and
  multi-step training are compared in float64, where that needs a value within ~1e-16 of a
  kink, and never across kernels in fp32 or lower.

Subjects: hrnet_w18_small_v2, which pads like W18 (18, 36, 72 -> 24, 40, 72 at 8; 32, 48, 80 at
16), and for training a slim HRNet with W18's branch widths and odd stem, stage-1 and head widths,
so every kind of width gets padded at a fraction of the cost. (hrnet_w18_small_v1's widths,
16 ... 128, are aligned already.)
"""
from __future__ import annotations

import copy
import dataclasses
import io

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

pytestmark = pytest.mark.numerics

NAME = "hrnet_w18_small_v2"
CLASSES = 10
CPU = Device("cpu")
SLIM = HRNetConfig("slim", layer1_blocks=1, layer1_planes=10, stage_modules=(1, 1, 1), blocks_per_branch=1,
                   branch_channels=(18, 36, 72, 144), stem_channels=20, head_planes=(6, 12, 24, 48), num_features=200)
# Error growth through the network: how many units of (epsilon x scale) two summation orders may
# end apart in a forward pass. ~40 layers, each BatchNorm dividing by a batch std estimated from a
# few values, grew a reordering to 4 units (AVX-512 and AVX2 kernels) and 260 (the scalar ATen path
# with SSE4.1 oneDNN) in fp32: 2**12 leaves a 16x margin. Autocast and o2 round each layer's
# output to 16 bits, which absorbs most reorderings; one flipped rounding is one unit, grown as above.
GROWTH = {"fp32": 2.0 ** 12, "amp": 2.0 ** 4, "bf16": 2.0 ** 4, "o2": 2.0 ** 4}
COMPUTE_DTYPE = {"fp32": torch.float32, "amp": torch.float16, "bf16": torch.bfloat16, "o2": torch.float16}
FLOAT64_TOLERANCE = 2.0 ** 20 * torch.finfo(torch.float64).eps  # 2.3e-10: same growth, three steps


def _rounding_tolerance(mode: str) -> float:
    """Largest gap, relative to the tensor's scale, that two summation orders may leave in `mode`."""
    return GROWTH[mode] * torch.finfo(COMPUTE_DTYPE[mode]).eps


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
def _assert_within_rounding(actual: torch.Tensor, expected: torch.Tensor, mode: str) -> None:
    atol = _rounding_tolerance(mode) * expected.abs().max().item()
    torch.testing.assert_close(actual.float(), expected.float(), rtol=0.0, atol=atol)


@pytest.mark.parametrize("align", [8, 16])
def test_same_init_same_logits_same_gradients(pairs, align):
    official, aligned = (copy.deepcopy(m) for m in pairs[align])
    assert aligned.official_config == official.config and aligned.align == align
    assert aligned.config.branch_channels != official.config.branch_channels
    _assert_same(official.state_dict(), aligned.state_dict(), aligned)
    x, y = _batch(64)
    logits = [model(x) for model in (official, aligned)]  # train mode: batch statistics
    _assert_within_rounding(logits[1], logits[0], "fp32")
    nn.functional.cross_entropy(logits[1], y).backward()
    assert padding_is_zero(aligned, {k: p.grad for k, p in aligned.named_parameters()})
    official.eval(), aligned.eval()
    _assert_within_rounding(aligned(x), official(x), "fp32")

    for model in (official, aligned):  # gradients: in float64, away from rounding-sized kinks
        model.double().train().zero_grad()
        nn.functional.cross_entropy(model(x.double()), y).backward()
    grads = [{k: p.grad for k, p in model.named_parameters()} for model in (official, aligned)]
    _assert_same(grads[0], grads[1], aligned, FLOAT64_TOLERANCE)


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
def test_every_precision_starts_from_the_official_forward_and_keeps_padding_zero(mode):
    official, aligned = _slim_pair(16 if mode in ("fp32", "o2") else 8)  # both multiples, half the cost
    runs = [(model, *_trainer(model, mode)) for model in (official, aligned)]
    x, _ = _batch(48)
    logits = []
    for model, precision, _, _ in runs:
        with precision.autocast():
            logits.append(model(x.to(precision.input_dtype)))
    _assert_within_rounding(logits[1], logits[0], mode)

    model, precision, to_optimizer, optimizer = runs[1]
    _train(model, precision, optimizer, steps=3)
    masters = precision.master_state_dict(model)
    assert padding_is_zero(model) and padding_is_zero(model, masters)
    assert all(value.isfinite().all() for value in masters.values())
    momentum = {name: optimizer.state[to_optimizer(p)]["momentum_buffer"] for name, p in model.named_parameters()}
    assert padding_is_zero(model, momentum)


def test_float64_training_agrees_to_rounding():
    """Three steps of training, the official model and the padded one: the same run, to rounding."""
    models = [model.double() for model in _slim_pair(8)]
    x, y = _batch(48)
    for model in models:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        for _ in range(3):
            nn.functional.cross_entropy(model(x.double()), y).backward()
            optimizer.step()
            optimizer.zero_grad()
    official, aligned = models
    _assert_same(official.state_dict(), aligned.state_dict(), aligned, FLOAT64_TOLERANCE)
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
        _assert_within_rounding(aligned(x), logits, "fp32")
        _assert_within_rounding(again(x), logits, "fp32")


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
