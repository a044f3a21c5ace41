"""Device selection and the NPU paths, exercised with a stub `torch_npu` (no CANN here)."""
import sys
import types

import pytest
import torch

from hrnet_fast import device as devmod
from hrnet_fast.device import Device, DeviceError, detect_kind, resolve_device

pytestmark = pytest.mark.numerics


class FakeFusedSGD(torch.optim.SGD):
    pass


@pytest.fixture
def stub_npu(monkeypatch):
    """A torch_npu that imports, registers torch.npu with two devices and offers NpuFusedSGD."""
    module = types.ModuleType("torch_npu")
    module.optim = types.SimpleNamespace(NpuFusedSGD=FakeFusedSGD)
    npu = types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 2)
    monkeypatch.setitem(sys.modules, "torch_npu", module)
    monkeypatch.setattr(torch, "npu", npu, raising=False)
    return module


def test_auto_prefers_npu_when_torch_npu_sees_a_device(stub_npu, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    dev = resolve_device("auto")
    assert dev.kind == "npu" and dev.index == 1  # LOCAL_RANK 3 on 2 devices
    assert dev.dist_backend == "hccl" and dev.default_precision() == "o2" and dev.pin_memory


def test_npu_uses_npu_fused_sgd(stub_npu):
    opt = Device("npu").sgd([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
    assert isinstance(opt, FakeFusedSGD)


def test_cuda_fused_sgd_survives_a_skipped_first_step():
    """Fused SGD makes its momentum with empty_like, then skips the update on overflow: a skipped
    first step must not leave that memory as momentum. CUDA's choice, built on CPU tensors."""
    try:
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, fused=True)
    except RuntimeError:
        pytest.skip("this torch has no fused SGD for CPU tensors (torch >= 2.4 has)")
    def run(optimizer_of):
        param = torch.nn.Parameter(torch.ones(4096))
        optimizer = optimizer_of([param])
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
        scaler.scale((param * float("inf")).sum()).backward()  # overflow: the step is skipped
        torch.full((4096,), float("nan")).sum()  # freed memory that empty_like could hand out
        scaler.step(optimizer)
        scaler.update()
        param.grad = torch.linspace(-1.0, 1.0, 4096)
        scaler.step(optimizer)
        return param.detach(), optimizer

    kwargs = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
    fused, optimizer = run(lambda ps: Device("cuda").sgd(ps, **kwargs))
    plain, _ = run(lambda ps: torch.optim.SGD(ps, foreach=False, **kwargs))
    assert optimizer.defaults["fused"]
    assert torch.equal(fused, plain)


def test_broken_torch_npu_falls_back_to_cpu(monkeypatch):
    """torch_npu installed without CANN raises OSError (libhccl.so) on import: not an NPU."""
    def failing_import(name):
        raise OSError("libhccl.so: cannot open shared object file")
    monkeypatch.setattr(devmod.importlib, "import_module", failing_import)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert detect_kind("auto") == "cpu"
    with pytest.raises(DeviceError, match="CANN"):
        detect_kind("npu")


def test_cuda_requested_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        detect_kind("cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        detect_kind("tpu")


def test_cpu_device_runs_stream_code_paths_as_no_ops():
    dev = Device("cpu")
    stream = dev.new_stream()
    assert stream is None and dev.dist_backend == "gloo" and not dev.pin_memory
    with dev.stream_context(stream):
        t = torch.ones(2)
    dev.wait_stream(stream)
    dev.record_stream(t)
    dev.synchronize()
    assert dev.default_precision() == "fp32" and dev.max_memory_allocated() == 0
    assert type(dev.sgd([torch.nn.Parameter(torch.zeros(1))], lr=0.1)) is torch.optim.SGD


class FakeGraph:
    """torch.npu.NPUGraph's surface: capture records what the context block launches."""

    def __init__(self) -> None:
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1


def test_npu_graph_capture_uses_npugraph(stub_npu, monkeypatch):
    captured = []

    class Capture:  # torch.npu.graph(graph): a context manager that records the block
        def __init__(self, graph):
            self.graph = graph

        def __enter__(self):
            captured.append(self.graph)

        def __exit__(self, *exc):
            return False

    class CaptureWithModes(Capture):  # torch.cuda.graph's signature
        def __init__(self, graph, capture_error_mode="global"):
            super().__init__(graph)
            modes.append(capture_error_mode)

    monkeypatch.setattr(torch.npu, "NPUGraph", FakeGraph, raising=False)
    monkeypatch.setattr(torch.npu, "graph", Capture, raising=False)
    work = []
    replay = Device("npu").capture(lambda: work.append("launched"))
    assert work == ["launched"] and len(captured) == 1  # the block ran inside the capture context
    replay()
    assert captured[0].replays == 1
    # where the mode exists: thread_local, so the loader's pin-memory thread cannot break capture
    modes = []
    monkeypatch.setattr(torch.npu, "graph", CaptureWithModes, raising=False)
    Device("npu").capture(lambda: None)
    assert modes == ["thread_local"]


def test_graphs_and_compile_explain_what_is_missing(stub_npu, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchair", None)  # not installed, even where it is
    assert "upgrade torch_npu" in Device("npu").graph_support()  # the stub has no NPUGraph
    assert "drop --graph" in Device("cpu").graph_support()
    with pytest.raises(DeviceError, match="torchair"):
        Device("npu").compile(torch.nn.Linear(2, 2))
    assert Device("cuda").graph_support() is None


def test_npu_runs_nchw_and_the_others_channels_last(stub_npu):
    assert Device("npu").memory_format is torch.contiguous_format
    assert Device("cuda").memory_format is torch.channels_last
    assert Device("cpu").memory_format is torch.channels_last


class FakeNpuScaler:
    def __init__(self, init_scale: float, dynamic: bool) -> None:
        self.init_scale, self.dynamic = init_scale, dynamic


def test_npu_uses_torch_npus_own_loss_scaler(stub_npu, monkeypatch):
    """torch_npu's scaler also unscales fused optimizers' combined gradients; always dynamic,
    because its static mode skips the finite check."""
    monkeypatch.setattr(stub_npu, "npu", types.SimpleNamespace(amp=types.SimpleNamespace(GradScaler=FakeNpuScaler)),
                        raising=False)
    scaler = Device("npu").grad_scaler(init_scale=128.0)
    assert isinstance(scaler, FakeNpuScaler) and scaler.init_scale == 128.0 and scaler.dynamic
    assert isinstance(Device("cpu").grad_scaler(init_scale=1.0), torch.amp.GradScaler)


@pytest.mark.parametrize("name, binary", [("Ascend910B1", True), ("Ascend910_9391", True), ("Ascend910A", False)])
def test_binary_kernels_only_where_they_are_the_default(stub_npu, monkeypatch, name, binary):
    modes = []
    monkeypatch.setattr(torch.npu, "get_device_name", lambda index=0: name, raising=False)
    monkeypatch.setattr(torch.npu, "set_device", lambda index: None, raising=False)
    monkeypatch.setattr(torch.npu, "set_compile_mode", lambda jit_compile: modes.append(jit_compile), raising=False)
    Device("npu").activate()
    assert modes == ([False] if binary else [])


def test_npu_capabilities_and_loader_pinning(stub_npu, monkeypatch):
    monkeypatch.setattr(torch.npu, "is_bf16_supported", lambda: True, raising=False)
    assert Device("npu").supports_bf16() and Device("npu").default_precision() == "o2"
    monkeypatch.setattr(torch.npu, "is_bf16_supported", lambda: False, raising=False)
    assert not Device("npu").supports_bf16()
    assert Device("npu").pin_memory == "npu" and Device("cuda").pin_memory is True


def test_cuda_bf16_default_needs_native_bf16(monkeypatch):
    """Before Ampere, torch's is_bf16_supported() says yes to emulated bf16: amp is the default there."""
    emulated_only = lambda including_emulation=True: including_emulation  # noqa: E731
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", emulated_only)
    assert Device("cuda").default_precision() == "amp"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert Device("cuda").default_precision() == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)  # torch 2.3: emulation counts
    for capability, precision in (((7, 0), "amp"), ((8, 0), "bf16")):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0, c=capability: c)
        assert Device("cuda").default_precision() == precision


def test_ddp_copies_gradients_back_on_npu(monkeypatch):
    """NPU fused optimizers keep a combined gradient buffer: DDP must not re-point gradients."""
    from torch.nn import parallel

    from hrnet_fast.distributed import wrap_ddp

    seen = {}
    monkeypatch.setattr(parallel, "DistributedDataParallel", lambda model, **kwargs: seen.update(kwargs))
    for kind, as_view in (("npu", False), ("cuda", True), ("cpu", True)):
        wrap_ddp(torch.nn.Linear(2, 2), Device(kind))
        assert seen["gradient_as_bucket_view"] is as_view, kind


@pytest.mark.parametrize("omp, cores, workers, threads", [
    (None, 8, 3, 5),    # the model gets what the loader leaves
    ("2", 2, 2, 1),     # run.sh's share (2) next to 2 workers on 2 cores: never oversubscribed
    ("4", 16, 3, 4),    # a user's (or torchrun's) count caps it
    (None, 2, 4, 1),    # at least one thread
])
def test_cpu_threads_leave_the_loaders_cores(monkeypatch, omp, cores, workers, threads):
    from hrnet_fast import device as device_module

    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    monkeypatch.setattr(device_module, "usable_cores", lambda: cores)
    chosen = []
    monkeypatch.setattr(torch, "set_num_threads", chosen.append)
    Device("cpu").share_cores_with_loader(workers)
    assert chosen == [threads]
