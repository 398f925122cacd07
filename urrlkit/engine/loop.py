"""The one training loop that pretraining, linear evaluation and fine-tuning share.

Accelerate owns devices, DDP, mixed precision and gradient accumulation; this loop owns the epoch/step
bookkeeping, the lr schedule, checkpoints (atomic, exactly resumable), the NaN stop and progress."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

from urrlkit.engine.checkpoint import Checkpointer, TrainState
from urrlkit.engine.logging import MetricLogger, ProgressReporter, say
from urrlkit.engine.optim import clip_gradients
from urrlkit.engine.prefetch import Prefetcher
from urrlkit.engine.progress import Progress
from urrlkit.engine.schedule import cosine_between, lr_at, lr_at_step
from urrlkit.errors import TrainingError

StepFn = Callable[[Any, Progress], tuple[torch.Tensor, dict[str, float | torch.Tensor]]]
AfterStep = Callable[[Progress], None]


def make_accelerator(run_dir: Path, seed: int, mixed_precision: str = "no", grad_accum: int = 1,
                     trackers: Sequence[str] | None = None) -> Accelerator:
    """An Accelerator with a seedable sampler and the run's tracker directory (same call on 1 CPU or N GPUs)."""
    # CPU processes share the machine's cores; one BLAS thread each avoids oversubscription.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    acc = Accelerator(
        mixed_precision=mixed_precision if torch.cuda.is_available() else "no",
        gradient_accumulation_steps=grad_accum,
        log_with=list(trackers) if trackers else None,
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=seed),
    )
    set_seed(seed, device_specific=False)
    return acc


@dataclass
class LoopSpec:
    """What `fit` runs. `schedule_per`: the lr (and scheduled weight decay) set once per epoch (lr_at, the
    existing runs) or before every step from the fractional epoch (lr_at_step: SimCLR, BYOL, MoCo v3, DINO).
    `weight_decay_end`: with it, every param group whose weight decay is nonzero gets cosine_between(
    weight_decay, weight_decay_end, epoch / epochs) at the same cadence (DINO). `clip_grad`: the gradients
    clipped to this norm between backward and the optimizer step ("global" or DINO's "per_param")."""

    epochs: int
    lr: float
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()
    warmup_epochs: int = 0
    checkpoint_every: int = 0  # steps; 0 = end of each epoch only
    log_every: int = 10
    title: str = "train"
    stop_after: int | None = None  # for tests/debugging: stop (as if killed) after this many global steps
    schedule_per: Literal["epoch", "step"] = "epoch"
    weight_decay: float = 0.0  # the scheduled groups' start value; read only with weight_decay_end
    weight_decay_end: float | None = None
    clip_grad: float | None = None
    clip_grad_mode: Literal["global", "per_param"] = "global"

    def __post_init__(self) -> None:
        if self.schedule_per not in ("epoch", "step"):
            raise ValueError(f"schedule_per {self.schedule_per!r}: expected epoch or step")
        if self.weight_decay_end is not None and self.weight_decay <= 0:
            raise ValueError("weight_decay_end needs the nonzero weight_decay the schedule starts from")


def fit(acc: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: Any,
        step_fn: StepFn, spec: LoopSpec, ckpt: Checkpointer | None, logger: MetricLogger | None,
        generators: list[torch.Generator], resume: bool = False,
        extra_state: dict[str, torch.Tensor] | None = None,
        prepare: Callable[[Any], Any] | None = None,
        on_epoch_end: Callable[[int], dict[str, float]] | None = None,
        after_step: AfterStep | None = None) -> TrainState:
    """Train `model` for spec.epochs over `loader` (already prepared), calling `step_fn(batch, progress)` for the
    loss; `progress` (engine/progress.py) says where the step stands in the run, from the checkpointed counters.
    `prepare`, if given, turns each batch into step_fn's input one batch ahead (on CUDA on a side stream during
    the previous step: engine/prefetch.py); it must not depend on when it runs.

    Checkpoints hold the model, the optimizer, the loop position, every generator in `generators` and the
    per-process tensors in `extra_state` (restored in place on resume).

    `on_epoch_end(epoch)`, if given, runs on every process after each finished epoch (0-based index), before
    that epoch's checkpoint, so what it changes is saved; a resume never repeats it for an epoch whose end
    checkpoint exists. The numbers it returns are logged under the stage's title.

    `after_step(progress)`, if given, runs after every optimizer step that applied (with gradient accumulation:
    after the last micro-step of each), with the progress its step ran at — e.g. BYOL's target-network update."""
    state = TrainState()
    watch = NaNWatch()
    if ckpt is not None:
        _attach(ckpt, model, optimizer, state, generators, extra_state, watch, resume)
    try:
        steps_per_epoch = len(loader)
        model.train()
        with ProgressReporter(acc, spec.title, spec.epochs * steps_per_epoch, spec.log_every) as reporter:
            while state.epoch < spec.epochs:
                epoch = state.epoch
                batches, lr = start_epoch(acc, loader, optimizer, spec, state, prepare)
                t0, seen = time.perf_counter(), 0
                for batch in batches:
                    progress = Progress(state.global_step, spec.epochs * steps_per_epoch, epoch, spec.epochs,
                                        state.step_in_epoch, steps_per_epoch)
                    if spec.schedule_per == "step":
                        lr = set_schedule(optimizer, spec, progress.epoch_float)
                    loss, stats = train_step(acc, model, optimizer, step_fn, batch, watch, progress,
                                             spec.clip_grad, spec.clip_grad_mode)
                    if after_step is not None and acc.sync_gradients:
                        after_step(progress)
                    state.step_in_epoch += 1
                    state.global_step += 1
                    seen += _batch_len(batch) * acc.num_processes
                    if should_log(state, spec, steps_per_epoch):
                        watch.check(acc)
                        info = step_info(loss, stats, lr, seen / max(time.perf_counter() - t0, 1e-9))
                        reporter.update(state.global_step, epoch, info)
                        if logger is not None:
                            logger.log({"stage": spec.title, "epoch": epoch, **info}, state.global_step)
                    else:
                        reporter.update(state.global_step, epoch, None)
                    epoch_done = state.step_in_epoch == steps_per_epoch
                    if epoch_done:
                        state.epoch, state.step_in_epoch = epoch + 1, 0
                        if on_epoch_end is not None:  # before the epoch's checkpoint, so what it changes is saved
                            _log_epoch_end(acc, spec.title, epoch, state.global_step, on_epoch_end(epoch), logger)
                            model.train()  # the hook may have evaluated the model
                    if ckpt is not None and should_checkpoint(state, spec):
                        save_checkpoint(acc, ckpt, model, state, watch)
                    if should_stop(state, spec):
                        watch.check(acc)
                        return state
                    if epoch_done:
                        break
        watch.check(acc)
        return state
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the exception says which checkpoints it leaves
        exc.checkpoints = ckpt.dir if ckpt is not None else None  # type: ignore[attr-defined]
        raise


def start_epoch(acc: Accelerator, loader: Any, optimizer: torch.optim.Optimizer, spec: LoopSpec,
                state: TrainState, prepare: Callable[[Any], Any] | None) -> tuple[Any, float]:
    """Set up epoch `state.epoch`: the sampler's epoch (its shuffling order), the batches still to run (those
    before `state.step_in_epoch` skipped on resume), the prefetcher, and the epoch's lr on every param group
    (set_schedule; per step, that of the first step to run, which the loop then sets before every step).
    Returns the batches and the lr."""
    epoch = state.epoch
    loader.set_epoch(epoch)
    batches = acc.skip_first_batches(loader, state.step_in_epoch) if state.step_in_epoch else loader
    if prepare is not None:
        batches = Prefetcher(batches, prepare, acc.device)
    at = epoch if spec.schedule_per == "epoch" else epoch + state.step_in_epoch / max(len(loader), 1)
    return batches, set_schedule(optimizer, spec, at)


def set_schedule(optimizer: torch.optim.Optimizer, spec: LoopSpec, epoch: float) -> float:
    """Set the lr at `epoch` (an epoch index, or the fractional epoch per step) on every param group, times
    the group's `lr_scale`, and with `spec.weight_decay_end` the scheduled weight decay on every group whose
    weight decay is nonzero (DINO schedules its regularized group only). Returns the lr."""
    rule = lr_at if spec.schedule_per == "epoch" else lr_at_step
    lr = rule(spec.lr, epoch, spec.epochs, spec.schedule, spec.milestones, spec.warmup_epochs)
    wd = None if spec.weight_decay_end is None else cosine_between(spec.weight_decay, spec.weight_decay_end,
                                                                    epoch / spec.epochs)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        if wd is not None and group["weight_decay"] != 0:
            group["weight_decay"] = wd
    return lr


def train_step(acc: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer, step_fn: StepFn,
               batch: Any, watch: NaNWatch, progress: Progress, clip_grad: float | None = None,
               clip_grad_mode: str = "global") -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
    """One optimizer step (or one accumulation micro-step: Accelerate decides whether the step applies): loss,
    NaN watch, backward, gradient clipping (on the step that applies: before it the gradients are partial
    sums), step, zero the gradients."""
    with acc.accumulate(model):
        loss, stats = step_fn(batch, progress)
        watch.update(loss, progress.step + 1)
        acc.backward(loss)
        if clip_grad is not None and acc.sync_gradients:
            clip_gradients(acc, model, clip_grad, clip_grad_mode)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return loss, stats


def step_info(loss: torch.Tensor, stats: dict[str, float | torch.Tensor], lr: float, img_s: float
              ) -> dict[str, float]:
    """What a log step reports: the loss (read back from the device here), the lr, the throughput and step_fn's
    own numbers."""
    return {"loss": float(loss.detach()), "lr": lr, "img_s": img_s, **{k: float(v) for k, v in stats.items()}}


def should_log(state: TrainState, spec: LoopSpec, steps_per_epoch: int) -> bool:
    """Every `log_every` global steps and at each epoch's last step. Reading the loss back from the GPU waits for
    every queued kernel, so the loss is read (and the NaN watch checked) only then and before checkpoints."""
    return state.global_step % spec.log_every == 0 or state.step_in_epoch == steps_per_epoch


def should_checkpoint(state: TrainState, spec: LoopSpec) -> bool:
    """At each epoch's end (the counters already moved to the next epoch) and every `checkpoint_every` steps."""
    return state.step_in_epoch == 0 or bool(spec.checkpoint_every and
                                            state.global_step % spec.checkpoint_every == 0)


def should_stop(state: TrainState, spec: LoopSpec) -> bool:
    """`stop_after` global steps reached (tests/debugging: stop as if killed, after any checkpoint)."""
    return spec.stop_after is not None and state.global_step >= spec.stop_after


def save_checkpoint(acc: Accelerator, ckpt: Checkpointer, model: torch.nn.Module, state: TrainState,
                    watch: NaNWatch) -> None:
    """Write a checkpoint, after checking that neither the loss nor the weights went bad: a checkpoint never holds
    inf/NaN/huge weights, so the last good one is what a stop leaves behind."""
    watch.check(acc)
    _check_weights(model, state, watch.kept)
    _keep(watch, _kept(ckpt.save(state.global_step).name, state.global_step))


def _attach(ckpt: Checkpointer, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainState,
            generators: list[torch.Generator], extra_state: dict[str, torch.Tensor] | None, watch: NaNWatch,
            resume: bool) -> None:
    """Hand the checkpointer what it saves, restore the last checkpoint on resume, note it for stop messages."""
    ckpt.attach(model, optimizer, state, generators, extra_state)
    if resume:
        _keep(watch, _kept(ckpt.load().name, state.global_step))
    else:
        _keep(watch, "no checkpoint had been written yet")


class NaNWatch:
    """Remembers, on the loss's device, the first global step whose loss was not finite; `check` (one host
    sync, collective across processes) raises TrainingError naming it. Steps after a bad one run on wasted
    weights until the next check, which always comes before a checkpoint is written."""

    def __init__(self) -> None:
        self.first_bad: torch.Tensor | None = None
        self.kept = "this stage writes no checkpoints"  # what a stop leaves behind, for the message

    def update(self, loss: torch.Tensor, global_step: int) -> None:
        bad = ~torch.isfinite(loss.detach()).reshape(())
        if self.first_bad is None:
            self.first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        self.first_bad = torch.where(bad & (self.first_bad < 0), global_step, self.first_bad)

    def check(self, acc: Accelerator | None = None) -> None:
        if self.first_bad is None:
            return
        first = self.first_bad.reshape(1)
        if acc is not None and acc.num_processes > 1:
            first = acc.gather(first).max().reshape(1)  # any process that saw a bad loss stops them all
        step = int(first.item())
        if step >= 0:
            raise TrainingError(f"loss became non-finite at global step {step}; stopped, {self.kept} — lower "
                                "optim.lr or check the data")


def _log_epoch_end(acc: Accelerator, title: str, epoch: int, global_step: int, numbers: dict[str, float],
                   logger: MetricLogger | None) -> None:
    """The epoch-end hook's numbers: one metrics record and one progress line, under the stage's title."""
    if not numbers:
        return
    values = {k: float(v) for k, v in numbers.items()}
    if logger is not None:
        logger.log({"stage": title, "epoch": epoch, **values}, global_step)
    say(acc, f"{title} epoch {epoch} end " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))


def _batch_len(batch: Any) -> int:
    """Images in a batch: the leading size of its first tensor (nested lists, e.g. of views, included)."""
    while isinstance(batch, list | tuple):
        batch = batch[0]
    return int(batch.shape[0])


# No parameter of a trained image network comes near this; weights beyond it have diverged (a loss can stay
# finite for a while with weights of 1e30), and such a checkpoint must not replace the last good one.
MAX_ABS_WEIGHT = 1e6


def _check_weights(model: torch.nn.Module, state: TrainState, kept: str) -> None:
    for name, p in model.named_parameters():
        top = p.detach().abs().max() if p.numel() else None
        if top is not None and not bool(top <= MAX_ABS_WEIGHT):  # NaN fails the comparison too
            what = (f"non-finite ({name})" if not bool(torch.isfinite(top)) else
                    f"as good as non-finite: |{name}| reached {float(top):.3g}, beyond {MAX_ABS_WEIGHT:g}")
            raise TrainingError(f"weights became {what} at global step {state.global_step}; stopped, {kept} — "
                                "lower optim.lr")


def _keep(watch: NaNWatch, text: str) -> None:
    watch.kept = text


def _kept(name: str, global_step: int) -> str:
    return f"the last good checkpoint ({name}, global step {global_step}) is kept"
