"""`urrl finetune`: a pretrained encoder + linear head trained on a downstream set with a regularizer,
optionally over a small validation sweep; then the recipe's eval suites on the test split."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from urrlkit import metrics
from urrlkit.data import from_config, num_classes, split_train_val
from urrlkit.engine.checkpoint import Checkpointer
from urrlkit.engine.linear import LinearProbe, extract_features
from urrlkit.engine.logging import MetricLogger, console
from urrlkit.engine.loop import LoopSpec, fit, make_accelerator
from urrlkit.engine.optim import build_optimizer
from urrlkit.errors import RecipeError, UrrlError
from urrlkit.finetune.regularizers import Stats, build_objective
from urrlkit.models import Classifier, Encoder
from urrlkit.recipe import NoReg, Recipe, ScheduleConfig, apply_overrides, to_file, validate_dict

REG_WEIGHT_FIELD = {"sim": "weight", "l2sp": "alpha", "adversarial": "eps"}


def train_classifier(recipe: Recipe, model: Classifier, train: Dataset, cfg: ScheduleConfig, ckpt_dir: Path,
                     title: str = "finetune", pretrained: Encoder | None = None, resume: bool = False,
                     stop_after: int | None = None) -> Classifier:
    """Supervised training of `model` on `train` with device-side crop/flip augmentation and the recipe's
    regularizer (finetune stage) or plain cross-entropy (linear stage). Returns the trained model on the CPU."""
    from urrlkit.augment import supervised_transform

    o = recipe.optim
    acc = make_accelerator(ckpt_dir.parent, recipe.run.seed, o.mixed_precision, o.grad_accum, [])
    per_process = max(1, cfg.batch_size // acc.num_processes)
    loader = DataLoader(train, batch_size=per_process, shuffle=True, drop_last=len(train) > per_process,  # type: ignore[arg-type]
                        num_workers=recipe.data.workers)
    optimizer = build_optimizer(model, "sgd", cfg.lr, cfg.momentum, cfg.weight_decay)
    wrapped, optimizer, loader = acc.prepare(model, optimizer, loader)
    reg = recipe.finetune.regularizer if title == "finetune" else NoReg()
    # The regularizer's frozen copy / starting weights are taken from `pretrained` on the training device.
    objective = build_objective(reg, wrapped, (pretrained or model.encoder).to(acc.device))
    augment = supervised_transform(cfg.augment, image_size=recipe.data.image_size, train=True)
    gen = torch.Generator(device=acc.device).manual_seed(recipe.run.seed * 1000 + 7 + acc.process_index)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, Stats]:
        x, y = batch
        with acc.autocast():
            loss, _, stats = objective(augment(x, gen), y)
        return loss, stats

    spec = LoopSpec(epochs=cfg.epochs, lr=cfg.lr, schedule=cfg.schedule, milestones=tuple(cfg.milestones),
                    log_every=o.log_every, title=title, stop_after=stop_after)
    logger = MetricLogger(acc, ckpt_dir.parent / "metrics.jsonl", False)
    fit(acc, wrapped, optimizer, loader, step, spec, Checkpointer(acc, ckpt_dir), logger, [gen], resume=resume)
    return acc.unwrap_model(wrapped).cpu().eval()


@torch.no_grad()
def accuracy(model: Classifier, ds: Dataset, image_size: int, batch_size: int = 256) -> float:
    feats, labels = extract_features(model.encoder, ds, image_size, batch_size)
    return 100.0 * metrics.top1(model.head(feats), labels)


def apply_cli(recipe: Recipe, reg: str | None, reg_weight: float | None) -> Recipe:
    """`--reg` / `--reg-weight` are shorthands for [finetune.regularizer] fields."""
    if reg is None and reg_weight is None:
        return recipe
    data = recipe.to_dict()
    current = data["finetune"]["regularizer"]
    if reg is not None and reg != current["type"]:
        current = {"type": reg}
    if reg_weight is not None:
        field = REG_WEIGHT_FIELD.get(current["type"])
        if field is None:
            raise RecipeError(f"--reg-weight: regularizer {current['type']!r} has no weight")
        current[field] = reg_weight
    data["finetune"]["regularizer"] = current
    return validate_dict(data, "--reg")


def parse_sweep(items: list[str], recipe_sweep: dict[str, list[float]]) -> dict[str, list[Any]]:
    """'regularizer.weight=0.1,1,10' → {'regularizer.weight': [0.1, 1.0, 10.0]} (keys relative to [finetune])."""
    sweep: dict[str, list[Any]] = dict(recipe_sweep)
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise RecipeError(f"--sweep {item!r}: expected KEY=V1,V2,..., e.g. regularizer.weight=0.1,1,10")
        try:
            sweep[key.strip()] = [float(v) for v in values.split(",")]
        except ValueError:
            raise RecipeError(f"--sweep {item!r}: values must be numbers") from None
    return sweep


def finetune_once(recipe: Recipe, pretrained: Encoder, out_dir: Path, with_val: bool, resume: bool = False,
                  stop_after: int | None = None) -> tuple[Classifier, dict[str, float]]:
    ft = recipe.finetune
    dataset = ft.dataset or recipe.data.dataset
    full_train = from_config(recipe.data, "train", dataset=dataset)
    train, val = split_train_val(full_train, ft.val_fraction if with_val else 0.0, seed=recipe.run.seed)
    model_cls = LinearProbe if ft.protocol == "linear" else Classifier
    torch.manual_seed(recipe.run.seed)  # the head's initialisation is part of the run's seed
    model = model_cls(copy.deepcopy(pretrained), num_classes(full_train))
    model = train_classifier(recipe, model, train, ft, out_dir / "checkpoints", pretrained=pretrained,
                             resume=resume, stop_after=stop_after)
    scores = {}
    if val is not None:
        scores["val_top1"] = accuracy(model, val, recipe.data.image_size)
    return model, scores


def run_finetune(recipe: Recipe, source: str, reg: str | None = None, reg_weight: float | None = None,
                 sweep: list[str] | None = None, resume: bool = False) -> Path:
    """Fine-tune the encoder at `source` (run dir, model dir, .safetensors or Hub id) as the recipe says."""
    from urrlkit.hub import load_backbone, save_model

    recipe = apply_cli(recipe, reg, reg_weight)
    pretrained = load_backbone(source)
    ft = recipe.finetune
    out = recipe.run_dir / f"finetune-{ft.regularizer.type}"
    if out.exists() and (out / "checkpoints" / "latest").exists() and not resume:
        raise UrrlError(f"{out}: a fine-tune run exists; pass --resume to continue it or change run.name")
    out.mkdir(parents=True, exist_ok=True)
    from urrlkit.engine.lock import check_resume_recipe, lock_run_dir

    lock_run_dir(out)  # one writer per fine-tune directory (urrlkit/engine/lock.py)
    grid = parse_sweep(sweep or [], ft.sweep)
    if grid:
        recipe, trials = _sweep(recipe, pretrained, out, grid)
        (out / "sweep.json").write_text(json.dumps(trials, indent=2))
    if resume:
        check_resume_recipe(recipe, out / "recipe.toml")  # before recipe.toml is rewritten
    to_file(recipe, out / "recipe.toml")
    model, scores = finetune_once(recipe, pretrained, out, with_val=ft.val_fraction > 0, resume=resume)
    test = from_config(recipe.data, "test", dataset=ft.dataset or recipe.data.dataset)
    scores["test_top1"] = accuracy(model, test, recipe.data.image_size)
    save_model(model, out / "model", recipe, stage="finetune", source=str(source),
               regularizer=ft.regularizer.model_dump(), classes=list(test.classes))  # type: ignore[attr-defined]
    (out / "finetune.json").write_text(json.dumps(scores, indent=2))
    console.print(f"fine-tuned ({ft.regularizer.type}) on {ft.dataset or recipe.data.dataset}: "
                  + ", ".join(f"{k} {v:.2f}%" for k, v in scores.items()) + f"  → {out / 'model'}", markup=False)
    if recipe.eval.suites:
        from urrlkit.evaluate.suites import evaluate_model

        evaluate_model(model, recipe, list(recipe.eval.suites), out / "eval", name=str(out / "model"))
    return out


def _sweep(recipe: Recipe, pretrained: Encoder, out: Path, grid: dict[str, list[Any]]
           ) -> tuple[Recipe, list[dict[str, Any]]]:
    """Train one model per grid point on the training part, score it on the validation part, keep the best
    settings. The test split is never looked at here."""
    if recipe.finetune.val_fraction <= 0:
        raise RecipeError("finetune.val_fraction must be > 0 to sweep (choices are made on validation data)")
    keys = list(grid)
    trials: list[dict[str, Any]] = []
    best: tuple[float, Recipe] | None = None
    for values in itertools.product(*(grid[k] for k in keys)):
        sets = [f"finetune.{k}={v}" for k, v in zip(keys, values, strict=True)]
        trial = validate_dict(apply_overrides(recipe.to_dict(), sets), "--sweep")
        tdir = out / "sweep" / "_".join(f"{k.split('.')[-1]}{v:g}" for k, v in zip(keys, values, strict=True))
        shutil.rmtree(tdir, ignore_errors=True)
        _, scores = finetune_once(trial, pretrained, tdir, with_val=True)
        trials.append({"settings": dict(zip(keys, values, strict=True)), **scores})
        console.print(f"sweep {dict(zip(keys, values, strict=True))}: val_top1 {scores['val_top1']:.2f}%",
                      markup=False)
        if best is None or scores["val_top1"] > best[0]:
            best = (scores["val_top1"], trial)
    assert best is not None
    return best[1], trials
