"""`urrl pretrain`: data → views (each drawing its family by Eq. 2, in the method's view groups) → the method (Eq. 1
for MoCo v2; any registered method) → encoder, then linear evaluation.

`pretrain` reads top to bottom: `setup` (run directory, accelerator, views, model, monitors, optimizer, trackers;
one named step each), `fit` (engine/loop.py), `finish` (the encoder saved). Everything a step needs lives in one
`Pretraining`, whose `step` turns a loader batch into views (augment/view_source.py ViewSource, whatever the
path) and hands them to the method.

The three stage workflows share one shape: `urrlkit/<stage>/workflow.py` with `run_<command>` as the CLI's
entry (pretext: run_pretrain, finetune: run_finetune, evaluate: run_eval).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from accelerate import PartialState
from torch.utils.data import DataLoader, Dataset

from urrlkit.augment.device_crops import decode_on_device  # noqa: F401  (re-exported: the stage's resolution)
from urrlkit.augment.multiview import ViewSampler, build_view_sampler
from urrlkit.augment.view_source import IndexedImages, ViewSource, resolve_decode
from urrlkit.config import Recipe, to_file
from urrlkit.data import dataset_labels, dataset_len, from_config
from urrlkit.engine.checkpoint import Checkpointer, TrainState, barrier, module_generators
from urrlkit.engine.logging import MetricLogger, say
from urrlkit.engine.loop import LoopSpec, fit, make_accelerator
from urrlkit.engine.optim import build_optimizer
from urrlkit.engine.progress import Progress
from urrlkit.errors import DataError, UrrlError
from urrlkit.models import Encoder, encoder_from_settings
from urrlkit.pretext.health import HealthMonitor
from urrlkit.pretext.probes import (
    EpochMonitor,
    ProbedPretext,
    knn_monitor,
    monitor_subset,
    new_probe,
    probe_param_groups,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

    from urrlkit.pretext.model import PretextModel

Indexed = IndexedImages  # (image, index) items: memory-bank methods need to know which image each view came from


def build_pretext(recipe: Recipe, num_samples: int, acc: Accelerator | None = None) -> PretextModel:
    """The model the recipe's method trains (pretext/model.py): the stage's edge, where [model] builds the encoder
    and [pretext] — the method's own settings class — builds its parts for this launch (process count of `acc`,
    per-process batch, run.seed, data set size). The method's start-up warnings are printed here."""
    from urrlkit.pretext.common import rank_world
    from urrlkit.pretext.model import BuildContext, build_model

    try:
        encoder = encoder_from_settings(recipe.model)
    except ValueError as exc:
        raise UrrlError(str(exc)) from None
    processes = acc.num_processes if acc is not None else rank_world()[1]
    ctx = BuildContext(num_samples=num_samples, seed=recipe.run.seed, processes=processes,
                       batch_per_process=recipe.data.batch_size // processes, image_size=recipe.data.image_size,
                       epochs=recipe.optim.epochs)
    model = build_model(recipe.pretext, encoder, ctx)
    for line in recipe.pretext.warnings(model, ctx) if acc is not None else ():
        say(acc, line)
    return model


def recipe_sampler(recipe: Recipe) -> ViewSampler:
    """The views pretraining with this recipe draws: the method's view groups, each view's family by paper Eq. 2."""
    return build_view_sampler(recipe.pretext.family_weights(), recipe.data.image_size, recipe.pretext.view_groups())


def view_source(recipe: Recipe, train: Dataset, sampler: ViewSampler, in_workers: bool, device_type: str = "cpu"
                ) -> ViewSource:
    """Where pretraining's views come from (augment/view_source.py): crops on the original photos or the stored
    images, decoded in the workers or on the device, the photometric stages in the workers or on the device."""
    d = recipe.data
    return ViewSource(train, sampler, recipe.run.seed, d.crop_from, resolve_decode(d.decode, device_type, in_workers),
                      in_workers)


def prepare_run_dir(recipe: Recipe, resume: bool) -> Path:
    run_dir = recipe.run_dir
    ckpt = run_dir / "checkpoints" / "latest"
    if not resume and ckpt.exists():
        raise UrrlError(f"{run_dir}: a run with checkpoints exists; pass --resume to continue it or choose "
                        "another run.name / run.output_dir")
    from urrlkit.engine.lock import check_resume_recipe, lock_run_dir

    lock_run_dir(run_dir)  # creates it, then one writer per run directory; refused before anything is written
    if resume:
        check_resume_recipe(recipe, run_dir / "recipe.toml")  # before recipe.toml is rewritten
    return run_dir


def build_monitors(recipe: Recipe, pretext: torch.nn.Module, train: Dataset, acc: Accelerator
                   ) -> tuple[ProbedPretext | None, Callable[[], float] | None]:
    """recipe's [monitor] as plain objects: the pretext with its online linear probe (monitor.linear) and the
    kNN monitor's measurement (monitor.knn; main process only, on its own, DDP or not), each None when off.
    Both need labels, looked up by index in the training set: a data set without them turns both off."""
    m = recipe.monitor
    if not (m.linear or m.knn):
        return None, None
    labels = dataset_labels(train)
    if labels is None:
        say(acc, f"monitor: {recipe.data.dataset!r} has no labels; online probe and kNN monitor off")
        return None, None
    probed, encoder = None, cast(Encoder, pretext.encoder)  # every method's backbone (MoCo: the query encoder)
    if m.linear:
        classes = len(getattr(train, "classes", ())) or int(labels.max()) + 1
        probe = new_probe(encoder.feature_dim, classes, recipe.run.seed)
        probed = ProbedPretext(pretext, probe, labels, acc.device)
    if not (m.knn and acc.is_main_process):
        return probed, None
    from urrlkit.evaluate.inputs import eval_split

    d = recipe.data
    # Read now, before training: a data set without a test split (a user's train-only folder) pretrains
    # without the kNN monitor rather than failing, the monitor being a diagnostic.
    try:
        train_ds, test_ds = (monitor_subset(eval_split(d, s), limit) for s, limit in
                             (("train", m.knn_train_images), ("test", m.knn_test_images)))
    except DataError as exc:
        say(acc, f"monitor: kNN monitor off, no test split to measure on ({str(exc).splitlines()[0]})")
        return probed, None
    return probed, lambda: knn_monitor(encoder, train_ds, test_ds, d.image_size, m.knn_k, m.knn_temperature,
                                       recipe.eval.batch_size, acc.device, d.workers)


@dataclass
class Pretraining:
    """Everything `setup` builds for one pretraining run, and the step the loop calls."""

    recipe: Recipe
    run_dir: Path
    acc: Accelerator
    source: ViewSource
    loader: DataLoader
    model: torch.nn.Module  # PretextModel, or ProbedPretext around it; prepared by Accelerate
    optimizer: torch.optim.Optimizer
    monitor: EpochMonitor | None
    health: HealthMonitor | None
    generator: torch.Generator  # the views' stream on the device (worker-made views carry their own seeds)
    counts: torch.Tensor  # views per family, on the device: bincount or .cpu() would stall a GPU every step
    extra: dict[str, torch.Tensor]  # per-process tensors the checkpoints keep (the counts, the probe's counts)
    images: int

    def step(self, batch: Any, progress: Progress) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        views, fam, index = self.source.views(batch, self.generator)
        self.counts.scatter_add_(0, fam.flatten(), torch.ones_like(fam.flatten()))
        with self.acc.autocast():
            out = self.model(views, index, progress)
        if self.health is not None:
            self.health.update(out)
        return out.loss, out.stats

    def after_step(self, progress: Progress) -> None:
        cast("PretextModel | ProbedPretext", self.acc.unwrap_model(self.model)).after_step(progress)

    @property
    def encoder(self) -> Encoder:
        return cast(Encoder, self.acc.unwrap_model(self.model).encoder)


def setup(recipe: Recipe, resume: bool) -> Pretraining:
    """The run's objects, one named step each."""
    run_dir = prepare_run_dir(recipe, resume)
    acc = setup_accelerator(recipe, run_dir)
    train, source, loader = setup_views(recipe, acc)
    pretext = build_pretext(recipe, dataset_len(train), acc)
    model, probed, monitor, health = setup_monitors(recipe, pretext, train, acc)
    optimizer = setup_optimizer(recipe, model, probed)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    setup_trackers(recipe, acc)
    generator = torch.Generator(device=acc.device).manual_seed(recipe.run.seed * 1000 + acc.process_index)
    counts = torch.zeros(len(source.sampler.names), dtype=torch.long, device=acc.device)
    # The counts are checkpointed, so after a resume they cover the whole run (the probe's: its epoch so far).
    extra = {"family_counts": counts}
    if probed is not None:
        extra.update(probe_correct=probed.correct, probe_seen=probed.seen)
    return Pretraining(recipe, run_dir, acc, source, loader, model, optimizer, monitor, health, generator, counts,
                       extra, dataset_len(train))


def setup_accelerator(recipe: Recipe, run_dir: Path) -> Accelerator:
    o = recipe.optim
    acc = make_accelerator(run_dir, recipe.run.seed, o.mixed_precision, o.grad_accum, recipe.run.trackers)
    if acc.is_main_process:
        to_file(recipe, run_dir / "recipe.toml")
    per_process = recipe.data.batch_size // acc.num_processes
    if per_process * acc.num_processes != recipe.data.batch_size:
        raise UrrlError(f"data.batch_size = {recipe.data.batch_size} must be divisible by the "
                        f"{acc.num_processes} processes")
    return acc


def setup_views(recipe: Recipe, acc: Accelerator) -> tuple[Dataset, ViewSource, DataLoader]:
    """The training images, where their views are made, and the loader of (view source) items."""
    d = recipe.data
    train = from_config(d, "train")
    n = dataset_len(train)
    if n < d.batch_size:
        raise DataError(f"data set {d.dataset!r} has {n} training images, fewer than one batch "
                        f"(data.batch_size = {d.batch_size})")
    source = view_source(recipe, train, recipe_sampler(recipe), d.augments_in_workers(acc.device.type),
                         acc.device.type)
    loader = DataLoader(source.dataset, batch_size=d.batch_size // acc.num_processes, shuffle=True, drop_last=True,
                        num_workers=d.workers, persistent_workers=d.workers > 0, collate_fn=source.collate_fn)
    return train, source, loader


def setup_monitors(recipe: Recipe, model: torch.nn.Module, train: Dataset, acc: Accelerator
                   ) -> tuple[torch.nn.Module, ProbedPretext | None, EpochMonitor | None, HealthMonitor | None]:
    """[monitor]: the model with its online probe (or as it is), the epoch-end hook, the health monitor."""
    m = recipe.monitor
    probed, knn = build_monitors(recipe, model, train, acc)  # both None when off (paper recipes)
    health = HealthMonitor(m.health_rows, chance_loss=recipe.pretext.chance_loss(recipe.data.batch_size),
                           chance_tol=m.health_chance_tol, std_ratio_warn=m.health_std_ratio,
                           main_process=acc.is_main_process) if m.health else None
    monitor = None if probed is None and knn is None and health is None else EpochMonitor(
        probed, knn, m.knn_every, recipe.optim.epochs, acc.is_main_process, health, lambda line: say(acc, line))
    return (probed if probed is not None else model), probed, monitor, health


def setup_optimizer(recipe: Recipe, model: torch.nn.Module, probed: ProbedPretext | None) -> torch.optim.Optimizer:
    """[optim] on the trainable parameters; the online probe's in a group of its own (its lr, no weight decay)."""
    o = recipe.optim
    lr = o.effective_lr(recipe.data.batch_size)  # optim.lr, or lr_per_256 / lr_sqrt scaled to the global batch
    groups = None
    if probed is not None:
        groups = probe_param_groups([p for p in probed.pretext.parameters() if p.requires_grad], probed.probe, lr,
                                    recipe.monitor.linear_lr)
    return build_optimizer(model, o.optimizer, lr, o.momentum, o.weight_decay, params=groups, **o.optimizer_kwargs())


def setup_trackers(recipe: Recipe, acc: Accelerator) -> None:
    if recipe.run.trackers:
        acc.init_trackers("pretrain", config=_flat(recipe.to_dict()))


def loop_spec(recipe: Recipe, stop_after: int | None) -> LoopSpec:
    o = recipe.optim
    return LoopSpec(epochs=o.epochs, lr=o.effective_lr(recipe.data.batch_size), schedule=o.schedule,
                    milestones=tuple(o.milestones), warmup_epochs=o.warmup_epochs,
                    checkpoint_every=o.checkpoint_every, log_every=o.log_every, title="pretrain",
                    stop_after=stop_after, **o.loop_kwargs())


def pretrain(recipe: Recipe, resume: bool = False, stop_after: int | None = None,
             keep_process_group: bool = False) -> Encoder:
    """Pretrain the encoder as `recipe` says; writes `<run_dir>/model` and returns the encoder. With
    keep_process_group the launch's process group stays up for a following stage."""
    run = setup(recipe, resume)
    acc = run.acc
    logger = MetricLogger(acc, run.run_dir / "metrics.jsonl", bool(recipe.run.trackers))
    logger.log({"stage": "pretrain-start", "processes": acc.num_processes, "device": str(acc.device),
                **run.source.describe(), "mixed_precision": acc.mixed_precision, "images": run.images,
                "resume": resume}, 0)
    ckpt = Checkpointer(acc, run.run_dir / "checkpoints")
    generators = [run.generator, *module_generators(acc.unwrap_model(run.model))]
    state = fit(acc, run.model, run.optimizer, run.loader, run.step, loop_spec(recipe, stop_after), ckpt, logger,
                generators, resume=resume, extra_state=run.extra, prepare=run.source.prepare,
                on_epoch_end=run.monitor, after_step=run.after_step)
    finish(run, state, logger)
    # Every rank leaves together: a rank that tore the (gloo) group down while the main one was still saving the
    # model sometimes aborted at exit ("terminate called without an active exception").
    barrier(acc)
    if keep_process_group:  # a stage follows in this launch (linear evaluation): its processes still need the group
        for tracker in acc.trackers:
            tracker.finish()
    else:
        acc.end_training()
    return run.encoder


def finish(run: Pretraining, state: TrainState, logger: MetricLogger) -> None:
    """After the last epoch: the family mix each view drew, logged, and the encoder saved (main process)."""
    recipe, acc = run.recipe, run.acc
    if state.epoch < recipe.optim.epochs or not acc.is_main_process:
        return
    from urrlkit.hub import save_model

    counts = run.counts.cpu()
    total = counts.sum().clamp(min=1)
    mix = {name: round(float(c) / float(total), 4) for name, c in zip(run.source.sampler.names, counts, strict=True)}
    logger.log({"stage": "pretrain-done", "family_fraction": mix}, state.global_step)
    save_model(run.encoder, run.run_dir / "model", recipe, stage="pretrain", method=recipe.pretext.method,
               families=[f.model_dump() for f in recipe.pretext.family_weights()])
    say(acc, f"pretrained encoder saved to {run.run_dir / 'model'} (views per family: {mix})")


def run_pretrain(recipe: Recipe, resume: bool = False, linear_eval: bool = True) -> None:
    evaluate = linear_eval and recipe.linear_eval.enabled
    encoder = pretrain(recipe, resume=resume, keep_process_group=evaluate)
    if evaluate:
        from urrlkit.finetune.linear import run_linear_eval

        # Every process of the launch trains the probe (DDP, as main_lincls.py); the main one then evaluates it.
        # --resume after a kill during linear evaluation continues the probe from its last checkpoint.
        run_linear_eval(recipe, encoder, resume=resume)
        state = PartialState()
        barrier(state)  # the other ranks wait for the main one's evaluation before the group goes (see above)
        state.destroy_process_group()


def _flat(d: dict, prefix: str = "") -> dict[str, int | float | str | bool]:
    out: dict[str, int | float | str | bool] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, int | float | str | bool):
            out[key] = v
        else:
            out[key] = str(v)
    return out
