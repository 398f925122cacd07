"""`urrl pretrain`: data → family sampler (Eq. 2) → pretext (Eq. 1) → encoder, then linear evaluation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
from accelerate import PartialState
from torch.utils.data import DataLoader, Dataset

from urrlkit.augment.device_crops import decode_on_device
from urrlkit.config import Recipe, to_file
from urrlkit.data import dataset_labels, dataset_len, from_config
from urrlkit.engine.checkpoint import Checkpointer, barrier, module_generators
from urrlkit.engine.logging import MetricLogger, say
from urrlkit.engine.loop import LoopSpec, fit, make_accelerator
from urrlkit.engine.optim import build_optimizer
from urrlkit.engine.progress import Progress
from urrlkit.errors import DataError, UrrlError
from urrlkit.models import Encoder, encoder_from_settings
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

    from urrlkit.augment import FamilySampler
    from urrlkit.pretext.model import PretextModel


class Indexed(Dataset):
    """Yields (image, index): memory-bank pretexts need to know which image each view came from."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return dataset_len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.ds[i][0], i


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


def recipe_sampler(recipe: Recipe) -> FamilySampler:
    """The family sampler (paper Eq. 2) that pretraining with this recipe draws its views from."""
    from urrlkit.augment import build_sampler

    return build_sampler(recipe.pretext.family_weights(), image_size=recipe.data.image_size,
                         views=recipe.pretext.views)


def view_source(recipe: Recipe, train: Dataset, sampler: FamilySampler, in_workers: bool, device_type: str = "cpu"
                ) -> tuple[Dataset, Callable | None]:
    """The images pretraining draws its views from and the DataLoader's collate_fn.

    File-backed data sets with data.crop_from = "original": each view's box drawn on the original image. With
    data.decode resolving to "device" (``decode_on_device``) the workers read the files' bytes and draw the boxes
    on the header sizes, the step decodes and cuts on the device (EncodedViewsCollate, augment/device_crops.py);
    otherwise the workers decode the originals and cut the views (OriginalViewsCollate), the photometric stages
    in the workers too when in_workers, else on the device. Other data sets: the stored images, all of each view
    made in the workers (AugmentingCollate) or on the device (no collate_fn). Worker batches seed their generator
    from their image indices (augment/workers.py); on the device one generator per process runs through the
    run, checkpointed (device decoding: one per batch, seeded by the worker, so prefetching cannot change it).
    """
    from urrlkit.augment.device_crops import EncodedViewsCollate, encoded_source
    from urrlkit.augment.workers import AugmentingCollate, OriginalViewsCollate
    from urrlkit.data import originals

    full = originals(train) if recipe.data.crop_from == "original" else None
    if full is not None and decode_on_device(recipe.data.decode, device_type, in_workers):
        encoded = encoded_source(train)
        if encoded is not None:
            return encoded, EncodedViewsCollate(sampler, recipe.run.seed)
    if full is not None:
        return full, OriginalViewsCollate(sampler, recipe.run.seed, photometric=in_workers)
    return train, AugmentingCollate(sampler, recipe.run.seed) if in_workers else None


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
    probed, encoder = None, cast(Encoder, pretext.encoder)  # every pretext's backbone (MoCo: the query encoder)
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


def pretrain(recipe: Recipe, resume: bool = False, stop_after: int | None = None,
             keep_process_group: bool = False) -> Encoder:
    """Pretrain the encoder as `recipe` says; writes `<run_dir>/model` and returns the encoder. With
    keep_process_group the launch's process group stays up for a following stage."""
    from urrlkit.augment.device_crops import EncodedViewsCollate, decode_views
    from urrlkit.augment.workers import OriginalViewsCollate
    from urrlkit.hub import save_model

    run_dir = prepare_run_dir(recipe, resume)
    o = recipe.optim
    acc = make_accelerator(run_dir, recipe.run.seed, o.mixed_precision, o.grad_accum, recipe.run.trackers)
    if acc.is_main_process:
        to_file(recipe, run_dir / "recipe.toml")
    train = from_config(recipe.data, "train")
    n = dataset_len(train)
    per_process = recipe.data.batch_size // acc.num_processes
    if per_process * acc.num_processes != recipe.data.batch_size:
        raise UrrlError(f"data.batch_size = {recipe.data.batch_size} must be divisible by the "
                        f"{acc.num_processes} processes")
    if n < recipe.data.batch_size:
        raise DataError(f"data set {recipe.data.dataset!r} has {n} training images, fewer than one batch "
                        f"(data.batch_size = {recipe.data.batch_size})")
    sampler = recipe_sampler(recipe)
    in_workers = recipe.data.augments_in_workers(acc.device.type)
    source, collate = view_source(recipe, train, sampler, in_workers, acc.device.type)
    loader = DataLoader(Indexed(source), batch_size=per_process, shuffle=True, drop_last=True,
                        num_workers=recipe.data.workers, persistent_workers=recipe.data.workers > 0,
                        collate_fn=collate)
    model: torch.nn.Module = build_pretext(recipe, n, acc)
    lr = o.effective_lr(recipe.data.batch_size)  # optim.lr, or optim.lr_per_256 scaled to the global batch
    probed, knn = build_monitors(recipe, model, train, acc)  # [monitor]: both None when off (paper recipes)
    groups = None
    if probed is not None:  # the pretext's parameters as before, the probe's in a group of its own
        model, groups = probed, probe_param_groups([p for p in model.parameters() if p.requires_grad],
                                                   probed.probe, lr, recipe.monitor.linear_lr)
    optimizer = build_optimizer(model, o.optimizer, lr, o.momentum, o.weight_decay, params=groups)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    if recipe.run.trackers:
        acc.init_trackers("pretrain", config=_flat(recipe.to_dict()))
    aug_gen = torch.Generator(device=acc.device).manual_seed(recipe.run.seed * 1000 + acc.process_index)
    # Views per family, counted on the device: bincount or .cpu() here would stall a GPU every step.
    counts = torch.zeros(len(sampler.names), dtype=torch.long, device=acc.device)

    def decode_batch(batch: tuple) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        # On CUDA one batch ahead, on a side stream (engine/prefetch.py): seeded per batch by the worker, so
        # neither the prefetch nor a resume changes the views.
        enc, fam, index = batch
        gen = torch.Generator(device=acc.device).manual_seed(enc.photo_seed)
        return sampler.photometric(decode_views(enc, acc.device), fam, gen), fam, index

    def step(batch: tuple, progress: Progress) -> tuple[torch.Tensor, dict[str, float | torch.Tensor]]:
        if in_workers:
            views, fam, index = batch
        elif isinstance(collate, OriginalViewsCollate):  # cut from the originals; the rest on the device
            cuts, fam, index = batch
            views = sampler.photometric(cuts, fam, aug_gen)
        elif isinstance(collate, EncodedViewsCollate):  # decoded, cut and augmented by decode_batch
            views, fam, index = batch
        else:
            images, index = batch
            views, fam = sampler(images, aug_gen)
        counts.scatter_add_(0, fam.flatten(), torch.ones_like(fam.flatten()))
        with acc.autocast():
            out = model(views, index, progress)
        return out.loss, out.stats

    def after_step(progress: Progress) -> None:
        cast("PretextModel | ProbedPretext", acc.unwrap_model(model)).after_step(progress)

    spec = LoopSpec(epochs=o.epochs, lr=lr, schedule=o.schedule,
                    milestones=tuple(o.milestones),
                    warmup_epochs=o.warmup_epochs, checkpoint_every=o.checkpoint_every, log_every=o.log_every,
                    title="pretrain", stop_after=stop_after)
    logger = MetricLogger(acc, run_dir / "metrics.jsonl", bool(recipe.run.trackers))
    logger.log({"stage": "pretrain-start", "processes": acc.num_processes, "device": str(acc.device),
                "augment_in": "workers" if in_workers else "device",
                "crops_from": "original" if isinstance(collate, OriginalViewsCollate | EncodedViewsCollate)
                else "stored", "decode": "device" if isinstance(collate, EncodedViewsCollate) else "cpu",
                "mixed_precision": acc.mixed_precision, "images": n, "resume": resume}, 0)
    ckpt = Checkpointer(acc, run_dir / "checkpoints")
    gens = [aug_gen, *module_generators(acc.unwrap_model(model))]
    # The counts are checkpointed, so after a resume they cover the whole run (the probe's: its epoch so far).
    extra = {"family_counts": counts}
    if probed is not None:
        extra.update(probe_correct=probed.correct, probe_seen=probed.seen)
    monitor = None if probed is None and knn is None else EpochMonitor(
        probed, knn, recipe.monitor.knn_every, o.epochs, acc.is_main_process)
    state = fit(acc, model, optimizer, loader, step, spec, ckpt, logger, gens, resume=resume, extra_state=extra,
                prepare=decode_batch if isinstance(collate, EncodedViewsCollate) else None, on_epoch_end=monitor,
                after_step=after_step)
    encoder = cast(Encoder, acc.unwrap_model(model).encoder)
    if state.epoch >= o.epochs and acc.is_main_process:
        counts = counts.cpu()
        total = counts.sum().clamp(min=1)
        mix = {name: round(float(c) / float(total), 4) for name, c in zip(sampler.names, counts, strict=True)}
        logger.log({"stage": "pretrain-done", "family_fraction": mix}, state.global_step)
        save_model(encoder, run_dir / "model", recipe, stage="pretrain", method=recipe.pretext.method,
                   families=[f.model_dump() for f in recipe.pretext.family_weights()])
        say(acc, f"pretrained encoder saved to {run_dir / 'model'} (views per family: {mix})")
    # Every rank leaves together: a rank that tore the (gloo) group down while the main one was still saving the
    # model sometimes aborted at exit ("terminate called without an active exception").
    barrier(acc)
    if keep_process_group:  # a stage follows in this launch (linear evaluation): its processes still need the group
        for tracker in acc.trackers:
            tracker.finish()
    else:
        acc.end_training()
    return encoder


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
