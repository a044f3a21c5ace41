"""Precision modes on the CPU: dtypes, fp32 masters under o2, skipped non-finite steps."""
import pytest
import torch
from torch import nn

from hrnet_fast.device import Device
from hrnet_fast.errors import UserError
from hrnet_fast.precision import MixedPrecision, param_groups

pytestmark = pytest.mark.numerics

CPU = Device("cpu")


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def setup(name: str, loss_scale=None):
    net = small_net()
    prec = MixedPrecision(name, CPU, loss_scale)
    prec.cast_model(net)
    to_opt = prec.optimizer_params(net)
    opt = CPU.sgd(param_groups(net, to_opt, 1e-4, False), lr=0.1, momentum=0.9, nesterov=True)
    return net, prec, opt


def step(net, prec, opt, x, y):
    with prec.autocast():
        out = net(x.to(prec.input_dtype))
    loss = nn.functional.cross_entropy(out.float(), y)
    prec.backward(loss)
    prec.step(opt)
    opt.zero_grad(set_to_none=True)
    return loss


def test_o2_keeps_fp16_weights_fp32_bn_and_fp32_masters():
    net, prec, opt = setup("o2")
    assert net[0].weight.dtype == torch.float16 and net[5].weight.dtype == torch.float16
    assert net[1].weight.dtype == torch.float32 and net[1].running_var.dtype == torch.float32
    opt_params = [p for g in opt.param_groups for p in g["params"]]
    assert all(p.dtype == torch.float32 for p in opt_params)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    before = net[0].weight.detach().clone()
    for _ in range(3):
        step(net, prec, opt, x, y)
    master = opt.param_groups[0]["params"][0]
    assert not torch.equal(before, net[0].weight)                       # fp16 copy was updated
    assert torch.equal(master.detach().half(), net[0].weight.detach())  # … from the fp32 master
    state = prec.master_state_dict(net)
    assert state["0.weight"].dtype == torch.float32 and torch.equal(state["0.weight"], master.detach())


@pytest.mark.parametrize("name", ["fp32", "amp", "bf16", "o2"])
def test_non_finite_loss_skips_the_step_and_is_counted(name):
    net, prec, opt = setup(name)
    weights = [p.detach().clone() for p in net.parameters()]
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    with prec.autocast():
        out = net(x.to(prec.input_dtype))
    loss = nn.functional.cross_entropy(out.float(), y) * float("nan")
    prec.backward(loss)
    prec.step(opt)
    opt.zero_grad(set_to_none=True)
    assert int(prec.skipped) == 1 and int(prec.max_consecutive) == 1
    assert all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))
    step(net, prec, opt, x, y)
    assert int(prec.skipped) == 1 and int(prec.consecutive) == 0
    assert not all(torch.equal(a, b) for a, b in zip(weights, net.parameters()))


def test_fp32_mode_is_plain_sgd():
    """Scale 1 must not change a single bit compared with an unscaled SGD step."""
    net, prec, opt = setup("fp32")
    ref = small_net()
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    for _ in range(3):
        step(net, prec, opt, x, y)
        nn.functional.cross_entropy(ref(x), y).backward()
        ref_opt.step()
        ref_opt.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), net.parameters()))


def test_static_loss_scale_stays_fixed_after_overflow():
    net, prec, opt = setup("o2", loss_scale=128)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    step(net, prec, opt, x, y)
    assert prec.scaler.get_scale() == 128.0
    with prec.autocast():
        out = net(x.to(prec.input_dtype))
    prec.backward(nn.functional.cross_entropy(out.float(), y) * float("inf"))
    prec.step(opt)
    assert prec.scaler.get_scale() == 128.0 and int(prec.skipped) == 1


def test_no_weight_decay_on_norm_and_bias():
    net = small_net()
    groups = param_groups(net, lambda p: p, 1e-4, no_wd_norm_bias=True)
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[1]["weight_decay"] == 0.0
    assert decayed == {id(net[0].weight), id(net[5].weight)}


def test_unknown_precision_is_a_user_error():
    with pytest.raises(UserError, match="unknown precision"):
        MixedPrecision("fp8", CPU)
