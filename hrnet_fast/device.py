"""Everything that differs between Ascend NPU, CUDA GPU and CPU lives here.

The rest of the code asks a `Device` for streams, the distributed backend, autocast, the fused
optimizer and memory figures, and never touches `torch.cuda` / `torch.npu` itself. NPU paths are
thin and import-guarded: `torch_npu` only imports on machines with the CANN toolkit.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import torch

from hrnet_fast.errors import UserError
from hrnet_fast.host import usable_cores

KINDS = ("npu", "cuda", "cpu")
# What each kind runs best with when not told (`--precision` unset, `--align-channels auto`):
# O2 and Ascend's 16-channel C0 blocks on NPU, bf16 (amp before Ampere) and 8 for tensor cores on CUDA.
DEFAULT_PRECISION = {"npu": "o2", "cuda": "bf16", "cpu": "fp32"}
BF16_FALLBACK = "amp"
DEFAULT_CHANNEL_ALIGN: dict[str, int | None] = {"npu": 16, "cuda": 8, "cpu": None}


class DeviceError(UserError):
    """A requested device or device feature this machine cannot provide; the message says what to do."""


def import_torch_npu() -> Any | None:
    """`torch_npu` if it imports (it registers `torch.npu`), else None. Never raises."""
    try:
        return importlib.import_module("torch_npu")
    except Exception:  # ImportError, or OSError when CANN libraries (libhccl.so …) are missing
        return None


def torch_module(kind: str) -> Any:
    """`torch.cuda`, or `torch.npu`, which torch_npu registers at import: torch's stubs know no
    `torch.npu`, so device modules are looked up by name (AttributeError when absent)."""
    return getattr(torch, kind)


def npu_available() -> bool:
    npu = import_torch_npu()
    if npu is None:
        return False
    try:
        return bool(torch_module("npu").is_available()) and torch_module("npu").device_count() > 0
    except Exception:
        return False


def detect_kind(requested: str = "auto") -> str:
    """NPU (torch_npu importable and a device present) → CUDA → CPU, unless `requested` names one."""
    if requested not in ("auto", *KINDS):
        raise DeviceError(f"unknown device {requested!r}: choose auto, npu, cuda or cpu")
    if requested == "npu" and not npu_available():
        raise DeviceError("--device npu: torch_npu cannot be imported or sees no NPU; source the "
                          "CANN set_env.sh and install the torch_npu that matches your torch")
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU visible to torch; check CUDA_VISIBLE_DEVICES "
                          "and that a CUDA build of torch is installed")
    if requested != "auto":
        return requested
    if npu_available():
        return "npu"
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


@dataclass(frozen=True)
class Device:
    """One process's compute device and the operations that depend on its kind."""

    kind: str
    index: int = 0

    # ---- identity -------------------------------------------------------------------------
    @property
    def torch_device(self) -> torch.device:
        return torch.device("cpu") if self.kind == "cpu" else torch.device(self.kind, self.index)

    @property
    def is_accelerator(self) -> bool:
        return self.kind != "cpu"

    @property
    def dist_backend(self) -> str:
        return {"npu": "hccl", "cuda": "nccl", "cpu": "gloo"}[self.kind]

    @property
    def pin_memory(self) -> bool | str:
        """The loaders' `pin_memory`: True pins for CUDA; on NPU the device type, which DataLoader
        needs there (without it, torch before 2.5 pins nothing when CUDA is absent)."""
        pin: dict[str, bool | str] = {"npu": "npu", "cuda": True, "cpu": False}
        return pin[self.kind]

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last where convolutions are NHWC-native (tensor cores, oneDNN); NCHW on
        Ascend, whose kernels are NCHW-native (its tuning guide names NHWC operators as slow)."""
        return torch.contiguous_format if self.kind == "npu" else torch.channels_last

    def _module(self) -> Any:
        return torch_module(self.kind)

    def describe(self) -> str:
        if self.kind == "cpu":
            return f"cpu ({torch.get_num_threads()} threads)"
        return f"{self.kind}:{self.index} ({self._module().get_device_name(self.index)})"

    # ---- set-up -----------------------------------------------------------------------------
    def activate(self) -> None:
        """Bind this process to its device and apply the per-kind runtime switches."""
        if self.kind == "cpu":
            # Subnormal floats (tiny gradients, BN of near-constant inputs) are 10-100x slower
            # on x86 cores; flushing them to zero is what accelerators do anyway.
            torch.set_flush_denormal(True)
            return
        self._module().set_device(self.index)
        if self.kind == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        else:  # Ascend: binary kernels instead of online compilation, HF32 for fp32 matmul/conv
            if self.binary_kernels():
                with contextlib.suppress(Exception):
                    torch_module("npu").set_compile_mode(jit_compile=False)
            with contextlib.suppress(Exception):
                torch_module("npu").conv.allow_hf32 = True
            with contextlib.suppress(Exception):
                torch_module("npu").matmul.allow_hf32 = True

    def binary_kernels(self) -> bool:
        """Precompiled (aclnn) kernels instead of online compilation: the default and the fast
        path from the Atlas A2 (910B) on; the 910A's default stays online compilation, because
        not every aclnn kernel exists for it."""
        try:
            name = str(torch_module("npu").get_device_name(self.index))
        except Exception:
            return False
        return "910B" in name or "910_93" in name

    def share_cores_with_loader(self, loader_workers: int) -> None:
        """On the CPU the model's threads and the loader's worker processes share the cores; give
        the model what the workers leave. Oversubscribed OpenMP threads spin at barriers and can
        make steps 10-40x slower. OMP_NUM_THREADS (launch/run.sh sets the rank's CPU share,
        torchrun 1) caps the count, since it cannot know how many loader workers will run."""
        if self.kind != "cpu":
            return
        threads = max(1, usable_cores() - loader_workers)
        cap = os.environ.get("OMP_NUM_THREADS", "")
        torch.set_num_threads(min(threads, int(cap)) if cap.isdigit() and int(cap) > 0 else threads)

    # ---- streams ----------------------------------------------------------------------------
    def new_stream(self) -> Any | None:
        return None if self.kind == "cpu" else self._module().Stream(device=self.torch_device)

    def stream_context(self, stream: Any | None) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if stream is None else self._module().stream(stream)

    def wait_stream(self, stream: Any | None) -> None:
        """Make the current stream wait for `stream` (no host sync)."""
        if stream is not None:
            self._module().current_stream(self.torch_device).wait_stream(stream)

    def record_stream(self, tensor: torch.Tensor) -> None:
        """Tell the caching allocator `tensor` is used on the current stream too."""
        if self.kind != "cpu":
            tensor.record_stream(self._module().current_stream(self.torch_device))

    @contextlib.contextmanager
    def side_stream(self, stream: Any | None) -> Iterator[None]:
        """Run the block on `stream` (from new_stream), ordered after and before the current one:
        what graph capture wants for its warm-up steps. On the CPU just run it."""
        if stream is None:
            yield
            return
        stream.wait_stream(self._module().current_stream(self.torch_device))
        with self.stream_context(stream):
            yield
        self.wait_stream(stream)

    # ---- compilation and graph capture ---------------------------------------------------------
    def compile(self, model: torch.nn.Module, backend: str | None = None) -> torch.nn.Module:
        """torch.compile for this device, static shapes: each batch shape compiles once (a run has
        one, or one per `--res` crop size; more than Dynamo's recompile_limit, 8, would run eagerly).

        Inductor on CUDA and the CPU (its compiled kernels are cached on disk, so a rerun compiles
        in seconds); on Ascend, torchair's graph backend when it is installed.
        `backend` overrides the choice (tests use "aot_eager": tracing without code generation)."""
        if backend is None and self.kind == "npu":
            try:
                torchair = importlib.import_module("torchair")
            except ImportError:
                raise DeviceError("--compile on an NPU needs torchair (the torch_npu graph-mode "
                                  "package that matches your torch_npu): install it or drop --compile") from None
            backend = torchair.get_npu_backend()
        # torch.compile of a Module returns an OptimizedModule, a Module; torch's stubs type the
        # result as the plain callable it also accepts
        return cast(torch.nn.Module, torch.compile(model, backend=backend or "inductor", dynamic=False))

    def graph_support(self) -> str | None:
        """None if this device can capture graphs, else why not (one line, says what to do)."""
        if self.kind == "cpu":
            return "graph capture needs a CUDA GPU or an Ascend NPU: drop --graph on the CPU"
        if self.kind == "npu" and not hasattr(self._module(), "NPUGraph"):
            return "this torch_npu has no NPUGraph (torch.npu.graph): upgrade torch_npu or drop --graph"
        return None

    def capture(self, work: Callable[[], None]) -> Callable[[], None]:
        """Record the device work `work` launches as one graph (nothing runs now) and return the
        graph's replay, which reruns it with a single launch: CUDA graphs, or NPUGraph (aclgraph)."""
        reason = self.graph_support()
        if reason:
            raise DeviceError(reason)
        module = self._module()
        graph = module.CUDAGraph() if self.kind == "cuda" else module.NPUGraph()
        # "thread_local": only this thread is restricted while capturing. The loader's pin-memory
        # thread allocates pinned buffers meanwhile, which the default mode counts as an error
        # that kills the capture and the run.
        try:
            capturing = module.graph(graph, capture_error_mode="thread_local")
        except TypeError:  # an NPUGraph without the option
            capturing = module.graph(graph)
        with capturing:
            work()
        return graph.replay

    def synchronize(self) -> None:
        if self.kind != "cpu":
            self._module().synchronize(self.index)

    # ---- precision and optimizer -------------------------------------------------------------
    def supports_bf16(self) -> bool:
        if self.kind == "cpu":
            return True
        module = self._module()
        try:  # CUDA from Ampere on; Ascend 910B and later (not the 910A)
            try:  # torch >= 2.4 would otherwise also say yes to emulated (slow) bf16 before Ampere
                return bool(module.is_bf16_supported(including_emulation=False))
            except TypeError:  # older torch, or torch_npu
                if self.kind == "cuda":
                    return module.get_device_capability(self.index)[0] >= 8
                return bool(module.is_bf16_supported())
        except Exception:
            return False

    def default_precision(self) -> str:
        """This kind's DEFAULT_PRECISION; bf16 only where the device computes it natively."""
        name = DEFAULT_PRECISION[self.kind]
        return BF16_FALLBACK if name == "bf16" and not self.supports_bf16() else name

    def default_channel_align(self) -> int | None:
        """Channel multiple the matrix units want: 8 for GPU tensor cores, 16 for Ascend C0 blocks."""
        return DEFAULT_CHANNEL_ALIGN[self.kind]

    def channel_align(self, setting: str) -> int | None:
        """`--align-channels 8|16|off|auto` as a multiple (None: the official widths)."""
        if setting == "auto":
            return self.default_channel_align()
        return None if setting == "off" else int(setting)

    def autocast(self, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.kind, dtype=dtype)

    def grad_scaler(self, init_scale: float) -> Any:
        """The loss scaler: torch.amp's, or on NPU torch_npu's own, which also unscales the fused
        optimizers' combined gradients and reads the NPU's overflow flag. Always dynamic there
        (torch_npu's static mode skips the finite check); a static scale is re-set each update."""
        if self.kind == "npu":
            npu_amp = getattr(getattr(import_torch_npu(), "npu", None), "amp", None)
            scaler = getattr(npu_amp, "GradScaler", None)
            if scaler is not None:
                return scaler(init_scale=init_scale, dynamic=True)
        return torch.amp.GradScaler(self.kind, init_scale=init_scale)

    def sgd(self, params: Iterable, graph: bool = False, **kwargs: Any) -> torch.optim.Optimizer:
        """The fastest SGD this device has: NpuFusedSGD, SGD(fused=True), else SGD(foreach=True).

        With `graph` (a captured step writes the gradients) not NpuFusedSGD: it moves gradients
        into a combined buffer of its own, where the graph's writes would never arrive."""
        if self.kind == "npu" and not graph:
            npu = import_torch_npu()
            fused = getattr(getattr(npu, "optim", None), "NpuFusedSGD", None)
            if fused is not None:
                return fused(params, **kwargs)
        if self.kind == "cuda":
            params = list(params)
            try:
                return _momentum_from_zero(torch.optim.SGD(params, fused=True, **kwargs))
            except (TypeError, RuntimeError):
                pass
        return torch.optim.SGD(params, foreach=True, **kwargs)

    # ---- memory -------------------------------------------------------------------------------
    def max_memory_allocated(self) -> int:
        return 0 if self.kind == "cpu" else int(self._module().max_memory_allocated(self.index))

    def reset_peak_memory(self) -> None:
        if self.kind != "cpu":
            self._module().reset_peak_memory_stats(self.index)

    @staticmethod
    def is_out_of_memory(exc: BaseException) -> bool:
        out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # top level from 2.5
        return isinstance(exc, out_of_memory) or "out of memory" in str(exc).lower()


def _momentum_from_zero(optimizer: torch.optim.SGD) -> torch.optim.SGD:
    """Give every parameter a zero momentum buffer before the first step.

    Fused SGD creates missing buffers with `empty_like` before its kernel runs, and the kernel
    returns early on an overflowed (skipped) step: a skipped first step would leave uninitialised
    memory as momentum. With dampening 0, zero buffers give the first step's result bit for bit."""
    for group in optimizer.param_groups:
        if group["momentum"] and not group["dampening"]:
            for param in group["params"]:
                optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)
    return optimizer


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(requested: str = "auto") -> Device:
    """The device for this process: its kind, and the index torchrun's LOCAL_RANK gives it."""
    kind = detect_kind(requested)
    index = 0
    if kind != "cpu":
        count = torch_module(kind).device_count()
        index = local_rank() % max(count, 1)
    return Device(kind, index)
