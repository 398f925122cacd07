"""Supervised training of a classifier (the fine-tuning and linear-probe stages): device-side crop/flip
augmentation, the recipe's regularizer, the engine's loop and checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from urrlkit.config import NoReg, Recipe, Regularizer, ScheduleConfig
from urrlkit.data import dataset_len
from urrlkit.engine.checkpoint import Checkpointer
from urrlkit.engine.logging import MetricLogger
from urrlkit.engine.loop import LoopSpec, fit, make_accelerator
from urrlkit.engine.optim import build_optimizer
from urrlkit.engine.progress import Progress
from urrlkit.finetune.regularizers import Stats, build_objective, regularized_parameters
from urrlkit.models import Classifier, Encoder


def train_classifier(recipe: Recipe, model: Classifier, train: Dataset, cfg: ScheduleConfig, ckpt_dir: Path,
                     regularizer: Regularizer | None, title: str = "finetune", pretrained: Encoder | None = None,
                     resume: bool = False, stop_after: int | None = None) -> Classifier:
    """Supervised training of `model` on `train` with device-side crop/flip augmentation, with `regularizer`
    (the fine-tuning stage passes [finetune.regularizer]) or plain cross-entropy (None: the linear probe).
    `title` names the stage in logs and metrics only. Returns the trained model on the CPU."""
    from urrlkit.augment.device_crops import decode_on_device, decode_views
    from urrlkit.augment.sampler import to_float
    from urrlkit.augment.workers import SupervisedEncodedCollate, supervised_source

    o = recipe.optim
    acc = make_accelerator(ckpt_dir.parent, recipe.run.seed, o.mixed_precision, o.grad_accum, [])
    per_process = max(1, cfg.batch_size // acc.num_processes)
    # Training crops of file-backed sets are cut from the original images (data.crop_from): in the workers, or,
    # with data.decode resolving to "device", the workers draw the boxes and the JPEGs are decoded and cut on the
    # device (augment/device_crops.py), one batch ahead of the step (engine/prefetch.py), as in pretraining.
    on_device = decode_on_device(recipe.data.decode, acc.device.type, in_workers=False)
    source, collate, augment = supervised_source(train, cfg.augment, recipe.data.image_size, recipe.data.crop_from,
                                                 seed=recipe.run.seed * 1000 + 7, decode_on_device=on_device)
    encoded = isinstance(collate, SupervisedEncodedCollate)

    def decode_batch(batch: tuple[Any, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        enc, y = batch
        return to_float(decode_views(enc, acc.device)), y
    loader = DataLoader(source, batch_size=per_process, shuffle=True, drop_last=dataset_len(train) > per_process,
                        num_workers=recipe.data.workers, collate_fn=collate)
    # The stage's edge: [finetune.regularizer] as the registered name and its builder's plain keyword values.
    name, values = (regularizer if regularizer is not None else NoReg()).builder_args()
    groups = decay_groups(model, cfg.weight_decay, regularized_parameters(name, model, **values))
    optimizer = build_optimizer(model, "sgd", cfg.lr, cfg.momentum, cfg.weight_decay, params=groups)
    wrapped, optimizer, loader = acc.prepare(model, optimizer, loader)
    # The regularizer's frozen copy / starting weights are taken from `pretrained` on the training device.
    objective = build_objective(name, wrapped, (pretrained or model.encoder).to(acc.device), **values)
    gen = torch.Generator(device=acc.device).manual_seed(recipe.run.seed * 1000 + 7 + acc.process_index)

    def step(batch: tuple[torch.Tensor, torch.Tensor], progress: Progress) -> tuple[torch.Tensor, Stats]:
        x, y = batch
        with acc.autocast():
            loss, _, stats = objective(x if encoded else augment(x, gen), y)
        return loss, stats

    spec = LoopSpec(epochs=cfg.epochs, lr=cfg.lr, schedule=cfg.schedule, milestones=tuple(cfg.milestones),
                    log_every=o.log_every, title=title, stop_after=stop_after)
    logger = MetricLogger(acc, ckpt_dir.parent / "metrics.jsonl", False)
    fit(acc, wrapped, optimizer, loader, step, spec, Checkpointer(acc, ckpt_dir), logger, [gen], resume=resume,
        prepare=decode_batch if encoded else None)
    return acc.unwrap_model(wrapped).cpu().eval()


def decay_groups(model: torch.nn.Module, weight_decay: float, no_decay: list[torch.nn.Parameter]
                 ) -> list[dict[str, Any]]:
    """Optimizer parameter groups over the trainable parameters: `weight_decay` on all but `no_decay`, which get
    none because a regularizer already penalises them (L2-SP replaces weight decay, Li et al. 2018)."""
    skip = {id(p) for p in no_decay}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in skip], "weight_decay": weight_decay},
              {"params": [p for p in trainable if id(p) in skip], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
