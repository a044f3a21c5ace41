"""The captured step (`--graph`) against the eager one, on the CPU with a stand-in graph.

The stand-in has a real graph's contract: capture runs nothing, replay runs the recorded work.
So a step that forgot to replay, replayed twice, captured work the graph cannot own (the
optimizer step), or dropped gradients the graph writes into, ends with other weights than the
eager run, or fails the static-gradient check. What it cannot show is kernel-level capture
safety; tests/test_cuda.py does that on a GPU.
"""
from __future__ import annotations

import pytest
import torch
from conftest import run_cli
from torch import nn

from hrnet_fast.device import Device
from hrnet_fast.errors import UserError
from hrnet_fast.models import HRNet, HRNetConfig
from hrnet_fast.precision import MixedPrecision, param_groups
from hrnet_fast.step import GraphedStep, make_step, train_step

CPU = Device("cpu")
TINY = HRNetConfig("tiny", layer1_blocks=1, layer1_planes=8, stage_modules=(1, 1, 1), blocks_per_branch=1,
                   branch_channels=(8, 16, 24, 32), stem_channels=16, head_planes=(4, 8, 12, 16), num_features=64)
CLASSES = 5


class StandInGraph:
    """Records `work` at capture without running it; replay runs it."""

    def __init__(self) -> None:
        self.captures = 0
        self.replays = 0

    def capture(self, work):
        self.captures += 1

        def replay() -> None:
            self.replays += 1
            work()
        return replay


@pytest.fixture
def stand_in(monkeypatch) -> StandInGraph:
    graph = StandInGraph()
    monkeypatch.setattr(Device, "graph_support", lambda self: None)
    monkeypatch.setattr(Device, "capture", lambda device, work: graph.capture(work))
    return graph


def _build(mode: str, loss_scale: float | None = None, device: Device = CPU, lr: float = 0.1):
    """The tiny model, its precision and SGD as the trainer builds them (also for tests/test_cuda.py)."""
    torch.manual_seed(0)
    model = HRNet(TINY, CLASSES).to(device.torch_device, memory_format=torch.channels_last)
    precision = MixedPrecision(mode, device, loss_scale)
    precision.cast_model(model)
    to_optimizer = precision.optimizer_params(model)
    optimizer = device.sgd(param_groups(model, to_optimizer, 1e-4, no_wd_norm_bias=True), lr=lr,
                           momentum=0.9, nesterov=True)
    return model, precision, optimizer


def _batches(steps: int, dtype: torch.dtype, device: Device = CPU, size: int = 32, batch: int = 6):
    """Seeded random batches (x channels_last in `dtype`, labels) on `device`."""
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(batch, 3, size, size, generator=generator).to(device.torch_device, dtype)
        labels = torch.randint(0, CLASSES, (batch,), generator=generator).to(device.torch_device)
        yield x.contiguous(memory_format=torch.channels_last), labels


@pytest.mark.parametrize("mode", ["fp32", "amp", "o2"])
def test_graphed_steps_equal_eager_steps(stand_in, mode):
    steps, warmup = 7, 2
    criterion = nn.CrossEntropyLoss()
    eager_model, eager_precision, eager_optimizer = _build(mode)
    eager_losses = [train_step(eager_model, x, y, criterion, eager_precision, eager_optimizer)
                    for x, y in _batches(steps, eager_precision.input_dtype)]

    model, precision, optimizer = _build(mode)
    step = GraphedStep(model, criterion, precision, optimizer, warmup=warmup)
    losses, gradients = [], []
    for x, y in _batches(steps, precision.input_dtype):
        losses.append(step(x, y))
        if step.captured:
            gradients.append([p.grad for group in optimizer.param_groups for p in group["params"]])

    assert stand_in.captures == 1 and stand_in.replays == steps - warmup
    # every replay writes into the gradients the capture made: same tensors, none dropped
    assert all(g is not None for g in gradients[0])
    assert all(all(a is b for a, b in zip(gradients[0], later)) for later in gradients[1:])
    assert torch.equal(torch.stack(losses), torch.stack(eager_losses))
    want, got = eager_precision.master_state_dict(eager_model), precision.master_state_dict(model)
    for key, value in want.items():
        assert torch.equal(value, got[key]), key
    # amp and o2 start at scale 2^16 and skip their first overflowing steps: the same ones
    assert int(precision.skipped) == int(eager_precision.skipped)
    assert precision.scaler.get_scale() == eager_precision.scaler.get_scale()


def test_a_captured_step_captures_once_per_shape_and_replays_a_shape_that_comes_back(stand_in):
    """Progressive resizing: 32, 64 and 32 px again. Each size warms up and is captured once, the
    32 px graph replays when that size returns, and every step equals the eager one."""
    sizes = [32, 32, 32, 64, 64, 64, 32, 32]
    criterion = nn.CrossEntropyLoss()
    eager_model, eager_precision, eager_optimizer = _build("fp32")
    model, precision, optimizer = _build("fp32")
    step = GraphedStep(model, criterion, precision, optimizer, warmup=1)
    eager_losses, losses = [], []
    for size in sizes:
        x, y = next(_batches(1, torch.float32, size=size))
        eager_losses.append(train_step(eager_model, x, y, criterion, eager_precision, eager_optimizer))
        losses.append(step(x, y))
    assert stand_in.captures == 2 and stand_in.replays == len(sizes) - 2  # all but one eager warm-up per size
    assert torch.equal(torch.stack(losses), torch.stack(eager_losses))
    want, got = eager_precision.master_state_dict(eager_model), precision.master_state_dict(model)
    assert all(torch.equal(value, got[key]) for key, value in want.items())


class CombiningSGD(torch.optim.SGD):
    """Moves gradients into a buffer of its own at its first step, as NpuFusedSGD does."""

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = p.grad.clone()
        return super().step(closure)


def test_an_optimizer_that_moves_gradients_is_refused(stand_in):
    model, precision, optimizer = _build("fp32")
    combining = CombiningSGD(optimizer.param_groups, lr=0.1)
    step = GraphedStep(model, nn.CrossEntropyLoss(), precision, combining, warmup=1)
    x, y = next(_batches(1, torch.float32))
    with pytest.raises(RuntimeError, match="moved gradients"):
        step(x, y)


class FusedLikeSGD(torch.optim.SGD):
    """What torch_npu's fused optimizers do: at the first step, move every gradient into one
    combined buffer (same tensor objects, new storage), update from that buffer from then on,
    and refuse zero_grad(set_to_none=True)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.combined: list[torch.Tensor] = []

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"]]
        if not self.combined:
            flat = torch.cat([p.grad.contiguous().view(-1) for p in params])
            offset = 0
            for p in params:
                contiguous = torch.empty(p.grad.shape, device="meta").stride()
                p.grad.set_(flat.untyped_storage(), offset, p.grad.shape, contiguous)
                offset += p.numel()
            self.combined = [p.grad for p in params]
        for p, grad in zip(params, self.combined):  # the fused kernel reads its own buffer
            p.grad = grad
        return super().step(closure)

    def zero_grad(self, set_to_none: bool = False) -> None:
        if set_to_none:
            raise ValueError("set_to_none is not supported in fused optimizers")
        super().zero_grad(set_to_none=False)


@pytest.mark.numerics
@pytest.mark.filterwarnings("ignore:grad and param do not obey")  # the combined buffer is contiguous
@pytest.mark.parametrize("mode", ["fp32", "o2"])
def test_the_eager_step_works_with_a_fused_npu_optimizer(mode):
    """Gradients stay in the tensors the fused optimizer combined, in every precision mode."""
    criterion = nn.CrossEntropyLoss()
    results = []
    for fused in (False, True):
        model, precision, optimizer = _build(mode, loss_scale=None if mode == "fp32" else 128.0)
        if fused:
            optimizer = FusedLikeSGD(optimizer.param_groups, lr=0.1)
        for x, y in _batches(4, precision.input_dtype):
            train_step(model, x, y, criterion, precision, optimizer)
        results.append(precision.master_state_dict(model))
    plain, fused = results
    assert all(torch.equal(plain[k], fused[k]) for k in plain)


def test_graph_mode_on_npu_avoids_npu_fused_sgd(monkeypatch):
    import sys
    import types

    fused = type("NpuFusedSGD", (torch.optim.SGD,), {})
    monkeypatch.setitem(sys.modules, "torch_npu", types.SimpleNamespace(optim=types.SimpleNamespace(NpuFusedSGD=fused)))
    params = [nn.Parameter(torch.zeros(2))]
    assert isinstance(Device("npu").sgd(params, lr=0.1), fused)
    assert not isinstance(Device("npu").sgd(params, graph=True, lr=0.1), fused)


def test_graphs_need_an_accelerator():
    model, precision, optimizer = _build("fp32")
    with pytest.raises(UserError, match="CUDA GPU or an Ascend NPU"):
        GraphedStep(model, nn.CrossEntropyLoss(), precision, optimizer)


def test_train_graph_on_the_cpu_is_one_line(tiny_shards, tmp_path):
    result = run_cli("-m", "hrnet_fast", "train", "--shards", str(tiny_shards), "--out", str(tmp_path / "run"),
                     "--model", "hrnet_w18_small_v1", "--image-size", "32", "--batch-size", "8", "--workers", "1",
                     "--device", "cpu", "--stop-step", "1", "--graph", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "drop --graph" in result.stderr


# ---- torch.compile ---------------------------------------------------------------------------------
# Inductor needs ~100 s on 2 cores for even a tiny HRNet, so these trace with "aot_eager": Dynamo
# and AOTAutograd see the whole model and its backward (graph breaks, mutations of BatchNorm
# buffers, channels_last), but no kernels are generated. The inductor path runs in benchmarks.
@pytest.mark.parametrize("graph", [False, True])
def test_compiled_steps_follow_eager_steps(stand_in, graph):
    """Traced BatchNorm rounds differently (~1e-7), and this tiny net at lr 0.1 on noise amplifies
    that ~30x per step, so two steps, each tensor to 1e-4 of its scale; a step that lost or doubled
    an update would be off by the update itself, ~1e-2."""
    steps = 2
    criterion = nn.CrossEntropyLoss()
    initial, _, _ = _build("fp32")
    eager_model, eager_precision, eager_optimizer = _build("fp32")
    for x, y in _batches(steps, torch.float32):
        train_step(eager_model, x, y, criterion, eager_precision, eager_optimizer)

    model, precision, optimizer = _build("fp32")
    compiled = CPU.compile(model, backend="aot_eager")
    step = (GraphedStep(compiled, criterion, precision, optimizer, warmup=1) if graph
            else make_step(compiled, criterion, precision, optimizer))
    for x, y in _batches(steps, torch.float32):
        step(x, y)
    start, want, got = initial.state_dict(), eager_model.state_dict(), model.state_dict()
    moved = 0.0
    for key, value in want.items():
        if value.is_floating_point():
            scale = value.abs().max().clamp_min(1e-3)
            assert (value - got[key]).abs().max() <= 1e-4 * scale, key
            moved = max(moved, float((value - start[key]).abs().max() / scale))
    assert moved > 1e-2


def test_train_with_compile_saves_official_keys(tiny_shards, tmp_path, monkeypatch, capsys):
    """--compile in the trainer: it runs, logs its warm-up, and checkpoints keep plain keys."""
    from hrnet_fast.models import create_model
    from hrnet_fast.train import train

    real_compile = Device.compile
    monkeypatch.setattr(Device, "compile", lambda self, model, backend=None: real_compile(self, model, "aot_eager"))
    out = tmp_path / "run"
    summary = train({"shards": str(tiny_shards), "out": str(out), "model": "hrnet_w18_small_v1", "image_size": 32,
                     "batch_size": 8, "workers": 0, "device": "cpu", "stop_step": 3, "log_interval": 1,
                     "compile": True})
    assert summary.steps == 3
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
    create_model("hrnet_w18_small_v1", num_classes=10).load_state_dict(state, strict=True)
    printed = capsys.readouterr().out
    assert "compilation or graph capture included" in printed
    assert "of this run (3 steps at" in printed  # compile time weighed against the run length


@pytest.mark.parametrize("res, sizes", [(None, 1), ("32:64", 2)])
def test_trainer_with_a_captured_step_matches_the_eager_trainer(tiny_shards, tmp_path, stand_in, res, sizes):
    """`train --graph` wiring: the step object lives across epochs and validation, checkpoints and
    metrics come out as usual, and the weights equal an eager run's bitwise (fp32, CPU); with
    `--res 32:64` the second epoch's 64 px batches get a graph of their own."""
    from hrnet_fast.train import train

    def run(out, graph: bool) -> dict[str, torch.Tensor]:
        train({"shards": str(tiny_shards), "out": str(out), "model": "hrnet_w18_small_v1", "image_size": 32,
               "res": res, "batch_size": 25, "workers": 0, "device": "cpu", "epochs": 2, "log_interval": 2,
               "seed": 5, "lr": 0.05, "graph": graph})
        return torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]

    eager, graphed = run(tmp_path / "eager", False), run(tmp_path / "graph", True)
    # 8 steps per epoch, 3 eager first for each size
    assert stand_in.captures == sizes and stand_in.replays == 2 * 8 - 3 * sizes
    assert all(torch.equal(eager[key], graphed[key]) for key in eager)


# ---- several processes: the captured step averages gradients itself, without DDP ------------------
def _two_rank_worker(rank: int, init_file: str, out_dir: str, mode: str, steps: int) -> None:
    """One of two gloo ranks: an eager DDP run and a captured run (stand-in graph, explicit
    gradient averaging), from the same start, on this rank's batches; saves both results."""
    import torch.distributed as dist

    from hrnet_fast import distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    Device.graph_support = lambda self: None
    Device.capture = lambda self, work: work  # capture runs nothing, replay reruns the work
    criterion = nn.CrossEntropyLoss()
    batches = list(_batches(2 * steps, torch.float32 if mode == "fp32" else torch.float16))[rank::2]
    results = {}
    for name in ("ddp", "graph"):
        model, precision, optimizer = _build(mode, loss_scale=None if mode == "fp32" else 128.0)  # no skips
        if name == "ddp":
            step = make_step(distributed.wrap_ddp(model, CPU), criterion, precision, optimizer)
        else:
            if rank == 1:  # another start on rank 1 (weights and o2 masters): rank 0's must win
                with torch.no_grad():
                    torch._foreach_add_([*model.parameters(), *precision.masters], 0.5)
            distributed.broadcast_from_main([*model.parameters(), *model.buffers(), *precision.masters])
            step = GraphedStep(model, criterion, precision, optimizer, warmup=2,
                               reduce_gradients=distributed.average_gradients)
        for x, y in batches:
            step(x.to(precision.input_dtype), y)
        assert int(precision.skipped) == 0
        results[name] = precision.master_state_dict(model)
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("mode", ["fp32", "amp", "o2"])
def test_two_ranks_captured_equal_ddp(tmp_path, mode):
    """Gradients averaged by one all-reduce of the flat buffer give DDP's weights on every rank:
    bitwise where both average the same fp32 gradients. Under o2, DDP averages the fp16 model
    gradients and the captured step their fp32 copies (one fp16 rounding fewer), so one step,
    to 1e-3 of each tensor's scale (a lost or doubled average would be off by the update)."""
    import torch.multiprocessing as mp

    steps = 1 if mode == "o2" else 5
    mp.spawn(_two_rank_worker, args=(str(tmp_path / "init"), str(tmp_path), mode, steps), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for rank in ranks:
        for key, value in rank["ddp"].items():
            if mode == "o2":
                scale = value.abs().max().clamp_min(1e-3)
                assert (value - rank["graph"][key]).abs().max() <= 1e-3 * scale, key
            else:
                assert torch.equal(value, rank["graph"][key]), key
    params = [k for k in ranks[0]["graph"] if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(ranks[0]["graph"][k], ranks[1]["graph"][k]) for k in params)


def _two_rank_trainer(rank: int, port: int, shards: str, out: str, graph: bool) -> None:
    """One of two ranks of `hrnet-fast train` as torchrun would start it, with the stand-in graph."""
    import os

    from hrnet_fast import train as trainer
    from hrnet_fast.train import train

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    Device.graph_support = lambda self: None
    Device.capture = lambda self, work: work
    evaluate = trainer.evaluate

    def evaluate_and_keep_statistics(model, *args, **kwargs):  # the BN statistics each rank validates with
        torch.save({k: v for k, v in model.state_dict().items() if "running" in k}, f"{out}/val_stats{rank}.pt")
        return evaluate(model, *args, **kwargs)
    trainer.evaluate = evaluate_and_keep_statistics
    train({"shards": shards, "out": out, "model": "hrnet_w18_small_v1", "image_size": 32, "batch_size": 10,
           "workers": 0, "device": "cpu", "epochs": 1, "log_interval": 2, "seed": 5, "lr": 0.05, "graph": graph})


def test_two_rank_trainer_with_graph_equals_ddp(tiny_shards, tmp_path):
    """`train --graph` under two processes (no DDP; broadcast at start, one all-reduce per step)
    ends with the DDP run's weights, bitwise (fp32, CPU, stand-in graph)."""
    import socket

    import torch.multiprocessing as mp

    results = {}
    for graph in (False, True):
        with socket.socket() as probe:  # a free port for this run's rendezvous
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        out = tmp_path / ("graph" if graph else "ddp")
        mp.spawn(_two_rank_trainer, args=(port, str(tiny_shards), str(out), graph), nprocs=2)
        results[graph] = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
        stats = [torch.load(out / f"val_stats{rank}.pt", weights_only=True) for rank in (0, 1)]
        assert all(torch.equal(stats[0][k], stats[1][k]) for k in stats[0])  # one model validated: rank 0's
    assert results[True]["step"] == results[False]["step"] == 10  # 200 images / (2 ranks x 10)
    assert all(torch.equal(results[False]["model"][k], results[True]["model"][k]) for k in results[False]["model"])
