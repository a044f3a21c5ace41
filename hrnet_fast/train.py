"""The training loop: DDP, precision modes, fused SGD, static shapes, exact resume, honest FPS.

One process or one per device under torchrun. The loop never waits for the host inside a step:
loss, skipped-step counts and the stop flag are read at sync points every `log_interval` steps.
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hrnet_fast import checkpoint, distributed
from hrnet_fast import log as logs
from hrnet_fast.config import TrainConfig, inherit, resolve, resolved
from hrnet_fast.data import DevicePrefetcher, ShardSource, TrainLoader, ValLoader, open_source
from hrnet_fast.device import Device, resolve_device
from hrnet_fast.ema import WeightEma
from hrnet_fast.errors import UserError
from hrnet_fast.evaluate import EvalResult, evaluate
from hrnet_fast.mix import BatchMix
from hrnet_fast.models import (
    create_model,
    load_weights,
    official_shapes,
    optimizer_official_shapes,
    pad_optimizer_state,
    pad_state_dict,
    strip_optimizer_state,
    strip_state_dict,
)
from hrnet_fast.precise_bn import recompute_bn_stats
from hrnet_fast.precision import MixedPrecision, param_groups
from hrnet_fast.resolution import image_size_at
from hrnet_fast.runlog import RunLog
from hrnet_fast.schedule import lr_at
from hrnet_fast.step import make_step
from hrnet_fast.torchrun import report_saved

log = logs.get(__name__)


@dataclass
class TrainSummary:
    fps: float
    steps: int
    epochs_done: int
    best_acc1: float | None
    best_source: str
    last_eval: EvalResult | None
    stopped_by_signal: bool
    run_dir: Path
    at_train_size: tuple[int, EvalResult] | None = None  # (crop size, result) when val used another size

    def to_json(self) -> dict[str, Any]:
        """RUN_DIR/summary.json: written last, after the final checkpoint, so launchers and
        schedulers can tell a run that saved (also after SIGTERM) from one that died."""
        return {"fps": self.fps if math.isfinite(self.fps) else None, "steps": self.steps,
                "epochs": self.epochs_done, "best_acc1": self.best_acc1, "best_source": self.best_source,
                "last_acc1": self.last_eval.acc1 if self.last_eval else None,
                "train_image_size": self.at_train_size[0] if self.at_train_size else None,
                "last_acc1_at_train_size": self.at_train_size[1].acc1 if self.at_train_size else None,
                "stopped_by_signal": self.stopped_by_signal}


def build_model_and_optimizer(cfg: TrainConfig, device: Device, precision: MixedPrecision,
                              sync_bn: bool = False) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model on the device in its memory format (channels_last but on NPU), channel-aligned
    and in the precision's dtypes, and its fused SGD."""
    model: nn.Module = create_model(cfg.model, num_classes=resolved(cfg.num_classes, "num_classes"),
                                    align=device.channel_align(cfg.align_channels))
    # torch's stubs lack Module.to(device, memory_format=...), which Module.to accepts
    model = model.to(device.torch_device, memory_format=device.memory_format)  # type: ignore[call-overload]
    precision.cast_model(model)
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    to_optimizer = precision.optimizer_params(model)
    groups = param_groups(model, to_optimizer, cfg.weight_decay, cfg.no_wd_norm_bias)
    optimizer = device.sgd(groups, graph=cfg.graph, lr=cfg.base_lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return model, optimizer


VAL_BATCHES_PER_READER = 8


class StopFlag:
    """SIGTERM / SIGINT ask the loop to save and exit 0 at the next safe point (pre-emption)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(overrides: dict[str, Any]) -> TrainSummary:
    """Set up device and process group, resolve the configuration with what they and the train
    shards tell (precision, agreed workers, class count), run, and tear down."""
    world = distributed.world_from_env()
    device = resolve_device(overrides.get("device") or "auto")
    resume_from = checkpoint.find_resume(overrides.get("resume"), Path(overrides.get("out") or TrainConfig.out))
    if resume_from is not None:
        overrides, kept = inherit(overrides, checkpoint.read_config(resume_from))
        if kept and world.is_main:
            settings = ", ".join(f"{k}={v}" for k, v in kept.items())
            log.info(f"resuming {resume_from} with the run's settings (flags override): {settings}")
    device.activate()
    distributed.init(device, world)
    try:
        train_source = open_source(overrides.get("shards") or TrainConfig.shards, "train", overrides.get("num_samples"))
        classes = train_source.classes
        cfg = resolve(overrides, world.size, default_precision=device.default_precision(),
                      workers=distributed.agreed_workers(overrides.get("workers"), device),
                      num_classes=len(classes) if classes else None)
        if cfg.num_classes is None:
            raise UserError("shards given as a URL carry no class list: pass --num-classes")
        return Trainer(cfg, device, world, train_source).run()
    finally:
        distributed.shutdown()


class Trainer:
    """One run of a resolved configuration; `cfg` is final and never changed here."""

    def __init__(self, cfg: TrainConfig, device: Device, world: distributed.World, train_source: ShardSource) -> None:
        self.cfg, self.device, self.world = cfg, device, world
        self.run_dir = Path(cfg.out)
        self.log = RunLog(self.run_dir, world.is_main, cfg.tensorboard)
        device.share_cores_with_loader(resolved(cfg.workers, "workers"))
        torch.manual_seed(cfg.seed)

        self.train_source = train_source
        self.val_source = self._open_val()
        self.classes = train_source.classes

        self.precision = MixedPrecision(resolved(cfg.precision, "precision"), device, cfg.loss_scale)
        model, self.optimizer = build_model_and_optimizer(cfg, device, self.precision,
                                                          sync_bn=cfg.sync_bn and world.distributed)
        self.raw_model = model
        self.ema = WeightEma(model, self.precision.to_optimizer, cfg.ema_decay) if cfg.ema_decay else None
        if world.distributed and cfg.graph:  # DDP's hooks cannot run inside a captured backward
            distributed.broadcast_from_main([*model.parameters(), *model.buffers(), *self.precision.masters])
        elif world.distributed:
            model = distributed.wrap_ddp(model, device)
        self.eval_model = model  # validation runs eagerly: no compilation for its other shapes
        self.model = device.compile(model) if cfg.compile else model
        num_classes = resolved(cfg.num_classes, "num_classes")
        self.mix = (BatchMix(cfg.mixup, cfg.cutmix, cfg.mix_prob, cfg.mix_switch_prob, cfg.label_smoothing,
                             num_classes, cfg.seed, world.rank) if cfg.mixup or cfg.cutmix else None)
        # mixing folds the label smoothing into its soft targets, as timm's Mixup does
        self.criterion = nn.CrossEntropyLoss(label_smoothing=0.0 if self.mix else cfg.label_smoothing)
        self.step_fn = self._step_function()

        self.loader = TrainLoader(self.train_source, batch_size=cfg.batch_size, image_size=cfg.image_size,
                                  rank=world.rank, world_size=world.size, num_workers=resolved(cfg.workers, "workers"),
                                  seed=cfg.seed, shuffle_buffer=cfg.shuffle_buffer,
                                  pin_memory=device.pin_memory, crop_scale=(cfg.crop_scale_min, 1.0),
                                  hflip=cfg.hflip, epochs=cfg.epochs)
        self.steps_per_epoch = self.loader.batches_per_epoch
        if self.steps_per_epoch < 1:
            raise UserError(f"the train split gives no full batch of {cfg.batch_size} per worker: "
                            "lower --batch-size or --workers")
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.image_size: int | None = None  # the train crop size of the epoch running (see resolution.py)
        self.best_acc1: float | None = None
        self.best_source = "raw"
        self.last_eval: EvalResult | None = None
        self._last_save = time.monotonic()
        self._resume()

    # ---- set-up helpers -------------------------------------------------------------------
    def _open_val(self):
        shards = self.cfg.val_shards or self.cfg.shards
        try:
            return open_source(shards, "val", self.cfg.val_num_samples)
        except UserError as exc:
            log.warning(f"no validation: {exc}")
            return None

    def _step_function(self):
        """`step(x, labels) -> loss`: eager, or replayed from a captured graph with --graph."""
        reduce_gradients = distributed.average_gradients if self.cfg.graph and self.world.distributed else None
        return make_step(self.model, self.criterion, self.precision, self.optimizer, self.cfg.graph,
                         reduce_gradients)

    def _resume(self) -> None:
        path = checkpoint.find_resume(self.cfg.resume, self.run_dir)
        if path is None:
            return
        ckpt = checkpoint.load(path)
        if ckpt["model_name"] != self.cfg.model:
            raise UserError(f"{path} was trained as {ckpt['model_name']}, not {self.cfg.model}: "
                            f"pass --model {ckpt['model_name']} or a new --out")
        load_weights(self.raw_model, ckpt["model"])
        self.precision.sync_masters_from_model(pad_state_dict(ckpt["model"], self.raw_model), self.raw_model)
        saved_groups = [len(g["params"]) for g in ckpt["optimizer"]["param_groups"]]
        if saved_groups != [len(g["params"]) for g in self.optimizer.param_groups]:
            raise UserError(f"{path} was trained with other parameter groups (weight decay on BN and "
                            f"bias differs: recipe {ckpt['config'].get('recipe')} vs {self.cfg.recipe}): "
                            "resume with the run's --recipe, or start a new --out")
        self.optimizer.load_state_dict(pad_optimizer_state(ckpt["optimizer"], self.optimizer))
        self.precision.load_state_dict(ckpt["precision"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.load_state_dict(pad_state_dict(ckpt["ema"], self.raw_model))
        elif self.ema is not None:
            self.ema.copy_model()
            log.info(f"{path} holds no EMA weights: the EMA starts from its weights")
        checkpoint.set_rng_state(ckpt["rng"])
        self.epoch, self.batch_in_epoch = ckpt["epoch"], ckpt["batch_in_epoch"]
        self.step, self.best_acc1 = ckpt["step"], ckpt.get("best_acc1")
        self.best_source = ckpt.get("best_source", "raw") if self.ema is not None else "raw"
        log.info(f"resumed from {path}: epoch {self.epoch}, batch {self.batch_in_epoch}, step {self.step}")

    # ---- checkpoints ----------------------------------------------------------------------
    def _checkpoint(self, best: bool = False) -> None:
        if not self.world.is_main:
            return
        shapes = official_shapes(self.raw_model)  # whatever --align-channels: padding lives only in memory
        state = checkpoint.build(
            model=strip_state_dict(self.precision.master_state_dict(self.raw_model), shapes),
            ema=strip_state_dict(self.ema.state_dict(), shapes) if self.ema is not None else None,
            model_name=self.cfg.model, num_classes=resolved(self.cfg.num_classes, "num_classes"), classes=self.classes or [],
            class_names=self.train_source.class_names or {}, image_size=self.cfg.image_size,
            optimizer=strip_optimizer_state(self.optimizer.state_dict(), optimizer_official_shapes(
                self.optimizer, self.raw_model, self.precision.to_optimizer)),
            precision=self.precision.state_dict(), epoch=self.epoch, batch_in_epoch=self.batch_in_epoch,
            step=self.step, best_acc1=self.best_acc1, best_source=self.best_source, rng=checkpoint.rng_state(),
            config=self.cfg.to_json())
        folder = self.run_dir / "checkpoints"
        checkpoint.save_atomic(state, folder / checkpoint.LAST)
        if best:
            checkpoint.save_atomic(state, folder / checkpoint.BEST)

    # ---- the loop ---------------------------------------------------------------------------
    def run(self) -> TrainSummary:
        cfg = self.cfg
        self.log.write_json("config.json", cfg.to_json())
        log.info(f"hrnet-fast train: {cfg.model} on {self.device.describe()} × {self.world.size}, "
                 f"precision {cfg.precision}, channels aligned to "
                 f"{self.device.channel_align(cfg.align_channels) or 'official widths'}, "
                 f"global batch {cfg.global_batch}, lr {cfg.base_lr:g}, "
                 f"{self.steps_per_epoch} steps/epoch (drops {self.loader.dropped_per_epoch} "
                 f"samples/epoch for equal steps on every rank); {self.loader.describe_plan()}")
        if self.epoch >= cfg.epochs:
            log.info(f"{self.run_dir} already finished its {cfg.epochs} epochs: raise --epochs to go on")
        meter = RateMeter(cfg.global_batch)
        self._first_step = self.step
        stopped = False
        with StopFlag() as stop:
            while self.epoch < cfg.epochs and not self._stop_step_reached():
                outcome = self._train_epoch(meter, stop)
                if outcome == "signal":
                    stopped = True
                    break
                if outcome == "epoch":
                    self._end_epoch(meter)
        self.loader.close()  # the train workers' CPUs go to the final evaluation
        self.device.synchronize()
        fps = meter.fps()
        if stopped or self._stop_step_reached():
            self._checkpoint()
        at_train_size = None if stopped or self._stop_step_reached() else self._eval_at_train_size()
        summary = TrainSummary(fps, self.step, self.epoch, self.best_acc1, self.best_source, self.last_eval, stopped,
                               self.run_dir, at_train_size)
        self.log.write_json("summary.json", summary.to_json())
        if stopped:  # other nodes' launchers cannot see summary.json: each gets a marker of its own
            distributed.barrier()
            report_saved(self.world.local_rank)
        log.info(f"FPS {fps:.1f}")
        self.log.close()
        return summary

    def _eval_at_train_size(self) -> tuple[int, EvalResult] | None:
        """After the last epoch, when val ran at another size than the last train crops (--val-image-size,
        --res): the final weights' Acc@1 at the train size too, beside the test size's, so the gain
        from testing larger shows (and a loss would)."""
        cfg = self.cfg
        train_size, val_size = image_size_at(cfg, cfg.epochs - 1), cfg.val_image_size or cfg.image_size
        if self.last_eval is None or self.epoch < cfg.epochs or train_size == val_size:
            return None
        result = self.validate(self.raw_model, self.eval_model, image_size=train_size)
        self.log.metrics({"kind": "final", "epoch": cfg.epochs - 1, "step": self.step, "image_size": train_size,
                          "acc1": result.acc1, "acc5": result.acc5, "val_image_size": val_size,
                          "val_acc1": self.last_eval.acc1})
        log.info(f"final weights: Acc@1 {self.last_eval.acc1:.2f} at the test size {val_size} px, "
                 f"{result.acc1:.2f} at the train size {train_size} px")
        return train_size, result

    def _stop_step_reached(self) -> bool:
        return self.cfg.stop_step is not None and self.step >= self.cfg.stop_step

    def _train_epoch(self, meter: RateMeter, stop: StopFlag) -> str:
        """Train until the epoch ends ("epoch"), --stop-step ("stop_step") or a signal ("signal")."""
        cfg, steps = self.cfg, self.steps_per_epoch
        self.model.train()
        image_size = image_size_at(cfg, self.epoch)
        if image_size != self.image_size:  # a new shape: compiled or captured anew (see make_step)
            log.info(f"epoch {self.epoch}: train crops of {image_size} px")
            self.image_size = image_size
        batches = self._train_batches(self.batch_in_epoch)
        progress = self._progress(steps, self.batch_in_epoch)
        loss_sum = torch.zeros((), device=self.device.torch_device)
        interval_steps = 0
        meter.start_interval()
        iterator = iter(batches)
        while self.batch_in_epoch < steps:
            wait_start = time.perf_counter()
            try:
                x, labels = next(iterator)
            except StopIteration:
                raise RuntimeError(f"loader ended after {self.batch_in_epoch} of {steps} batches") from None
            meter.data_wait += time.perf_counter() - wait_start
            if self.mix is not None:  # keyed by the step: a resumed run mixes as the straight one did
                x, labels = self.mix(x, labels, self.epoch, self.batch_in_epoch)
            lr = lr_at(cfg, self.epoch + self.batch_in_epoch / steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss_sum += self.step_fn(x, labels)
            interval_steps += 1
            self.step += 1
            if self.ema is not None:  # eager, after the optimizer step (outside a captured graph)
                self.ema.update(self.step)
            self.batch_in_epoch += 1
            progress.update(1)
            at_sync = (interval_steps >= cfg.log_interval or self.batch_in_epoch == steps
                       or self._stop_step_reached())
            if at_sync:
                self._sync_point(meter, loss_sum, interval_steps, lr, progress)
                loss_sum.zero_()
                interval_steps = 0
                meter.start_interval()
            if (at_sync or not self.world.distributed) and self._agreed_stop(stop):
                progress.close()
                return "signal"
            if self._stop_step_reached():
                progress.close()
                return "stop_step"
        progress.close()
        return "epoch"

    def _agreed_stop(self, stop: StopFlag) -> bool:
        """Every rank must stop at the same step: the flag is all-reduced at sync points."""
        if not self.world.distributed:
            return stop.requested
        flag = torch.tensor([1 if stop.requested else 0], device=self.device.torch_device)
        return bool(distributed.all_reduce_max(flag).item())

    def _train_batches(self, skip_batches: int = 0) -> DevicePrefetcher:
        """This epoch's train batches on the device, cropped to its size (see resolution.py)."""
        batches = self.loader.epoch_iter(self.epoch, skip_batches, image_size=image_size_at(self.cfg, self.epoch))
        return DevicePrefetcher(batches, self.device, dtype=self.precision.input_dtype)

    def _sync_point(self, meter: RateMeter, loss_sum: torch.Tensor, n: int, lr: float, progress) -> None:
        loss = float(loss_sum.item()) / max(n, 1)  # the only host sync, once per interval
        meter.end_interval(n)
        bad = int(self.precision.max_consecutive.item())
        if bad >= self.cfg.max_bad_steps:
            raise UserError(f"{bad} steps in a row had a non-finite loss or gradient (skipped): the run "
                            "diverged; lower --lr, use --precision fp32/bf16, or resume from an earlier checkpoint")
        rate = meter.last_rate
        if self.cfg.compile or self.cfg.graph:
            self._report_warmup(meter)
        progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.4g}", img_s=f"{rate:.0f}")
        self.log.metrics({"kind": "train", "epoch": self.epoch, "step": self.step, "loss": loss, "lr": lr,
                          "image_size": self.image_size, "images_per_s": rate, "data_wait_share": meter.last_wait_share,
                          "skipped_steps": int(self.precision.skipped.item())})
        if time.monotonic() - self._last_save > self.cfg.ckpt_minutes * 60:
            self._checkpoint()
            self._last_save = time.monotonic()

    def _report_warmup(self, meter: RateMeter) -> None:
        """Compilation and capture against the run length: what they cost, and what share of
        this run that is (from the second interval's steady step time)."""
        if meter.intervals == 1:
            log.info(f"first {meter.first_steps} steps took {meter.first_seconds:.1f} s, compilation "
                     "or graph capture included (FPS leaves this interval out)")
        elif meter.intervals == 2:
            step_seconds = meter.timed_seconds / meter.timed_steps
            overhead = max(meter.first_seconds - meter.first_steps * step_seconds, 0.0)
            planned = self.cfg.epochs * self.steps_per_epoch
            if self.cfg.stop_step is not None:
                planned = min(planned, self.cfg.stop_step)
            run_seconds = (planned - self._first_step) * step_seconds + overhead
            share = overhead / max(run_seconds, 1e-9)
            hint = ": for runs this short, leave --compile / --graph off" if share > 0.1 else ""
            log.info(f"warm-up cost {overhead:.1f} s, {share:.1%} of this run "
                     f"({planned - self._first_step} steps at {step_seconds * 1000:.0f} ms){hint}")

    def _end_epoch(self, meter: RateMeter) -> None:
        epoch_done = self.epoch
        self.epoch += 1
        self.batch_in_epoch = 0
        record: dict[str, Any] = {"kind": "epoch", "epoch": epoch_done, "step": self.step,
                                  "image_size": self.image_size,
                                  "epoch_seconds": meter.take_epoch_seconds()}
        is_best = self.val_source is None
        if self.val_source is not None and (self.epoch % self.cfg.val_every == 0 or self.epoch == self.cfg.epochs):
            self.last_eval = self.validate(self.raw_model, self.eval_model)
            record.update(acc1=self.last_eval.acc1, acc5=self.last_eval.acc5, val_images=self.last_eval.images)
            log.info(f"epoch {epoch_done}: {self.last_eval.line()}")
            score, source = self.last_eval.acc1, "raw"
            if self.ema is not None:
                ema_module = self.ema.eval_module()
                ema_eval = self.validate(ema_module, ema_module)
                record.update(ema_acc1=ema_eval.acc1, ema_acc5=ema_eval.acc5)
                log.info(f"epoch {epoch_done} EMA: {ema_eval.line()}")
                if ema_eval.acc1 > score:
                    score, source = ema_eval.acc1, "ema"
            is_best = self.best_acc1 is None or score > self.best_acc1
            if is_best:
                self.best_acc1, self.best_source = score, source
        self.log.metrics(record)
        self._checkpoint(best=is_best)
        self._last_save = time.monotonic()
        meter.start_interval()

    def validate(self, model: nn.Module, forward: nn.Module, image_size: int | None = None) -> EvalResult:
        """Accuracy of `model` (the raw weights or their EMA), run through `forward` (itself or
        its DDP wrapper): one model, the one checkpoints keep, rank 0's. Each rank's BatchNorm
        statistics follow its own batches (DDP does not broadcast buffers here), so rank 0's are
        sent to all before they share out the val set. With --precise-bn they are first
        recomputed for the current weights, from the start of the next epoch's train stream.
        `image_size`: the val crop size [--val-image-size, else --image-size]."""
        if self.cfg.precise_bn:
            recompute_bn_stats(model, self._train_batches(), self.cfg.precise_bn, self.precision.autocast)
        if self.world.distributed:
            distributed.broadcast_from_main(model.buffers())
        loader = ValLoader(self.val_source, batch_size=self.cfg.batch_size,
                           image_size=image_size or self.cfg.val_image_size or self.cfg.image_size,
                           rank=self.world.rank, world_size=self.world.size, num_workers=self._val_workers(),
                           pin_memory=self.device.pin_memory)
        batches = DevicePrefetcher(loader, self.device, dtype=self.precision.input_dtype)
        return evaluate(forward, batches, self.device, self.precision.autocast)

    def _val_workers(self) -> int:
        """As many val readers as keep at least VAL_BATCHES_PER_READER batches each: every reader
        runs the same number of batches, padded, so more readers on a small share pad more."""
        batches = self.val_source.num_samples // (self.world.size * self.cfg.batch_size * VAL_BATCHES_PER_READER)
        return min(resolved(self.cfg.workers, "workers"), max(1, batches))

    def _progress(self, total: int, initial: int):
        from tqdm import tqdm
        return tqdm(total=total, initial=initial, desc=f"epoch {self.epoch}", unit="step",
                    disable=None if self.world.is_main else True,  # None: off when not a terminal
                    leave=False, dynamic_ncols=True)


class RateMeter:
    """FPS as the Ascend port defines it: global batch / step time, data waiting included,
    averaged after warm-up (the first interval is not counted; validation and checkpoint time
    fall between intervals and are not counted either)."""

    def __init__(self, global_batch: int) -> None:
        self.global_batch = global_batch
        self.intervals = 0
        self.timed_steps = 0
        self.timed_seconds = 0.0
        self.first_steps = 0
        self.first_seconds = 0.0
        self.all_steps = 0
        self.all_seconds = 0.0
        self.data_wait = 0.0
        self.last_rate = 0.0
        self.last_wait_share = 0.0
        self._start = time.perf_counter()
        self._epoch_seconds = 0.0

    def start_interval(self) -> None:
        self._start = time.perf_counter()
        self.data_wait = 0.0

    def end_interval(self, steps: int) -> None:
        seconds = time.perf_counter() - self._start
        self._epoch_seconds += seconds
        self.last_rate = steps * self.global_batch / max(seconds, 1e-9)
        self.last_wait_share = self.data_wait / max(seconds, 1e-9)
        self.all_steps += steps
        self.all_seconds += seconds
        if self.intervals > 0:
            self.timed_steps += steps
            self.timed_seconds += seconds
        else:
            self.first_steps, self.first_seconds = steps, seconds
        self.intervals += 1

    def take_epoch_seconds(self) -> float:
        seconds, self._epoch_seconds = self._epoch_seconds, 0.0
        return seconds

    def fps(self) -> float:
        steps, seconds = (self.timed_steps, self.timed_seconds) if self.timed_steps else (self.all_steps, self.all_seconds)
        return steps * self.global_batch / seconds if seconds > 0 else math.nan
