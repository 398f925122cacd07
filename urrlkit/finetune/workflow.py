"""`urrl finetune`: a pretrained encoder + linear head trained on a downstream set with a regularizer,
optionally over a small validation sweep; then the recipe's eval suites on the test split.

The three stage workflows share one shape: `urrlkit/<stage>/workflow.py` with `run_<command>` as the CLI's
entry (pretext: run_pretrain, finetune: run_finetune, evaluate: run_eval).
"""

from __future__ import annotations

import copy
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from urrlkit.config import Recipe, apply_overrides, to_file, validate_dict
from urrlkit.data import dataset_len, from_config, num_classes, split_train_val
from urrlkit.engine.logging import console
from urrlkit.errors import RecipeError, UrrlError
from urrlkit.evaluate.inputs import eval_split
from urrlkit.finetune.linear import LinearProbe, streaming_top1
from urrlkit.finetune.train import train_classifier
from urrlkit.models import Classifier, Encoder

REG_WEIGHT_FIELD = {"sim": "weight", "l2sp": "alpha", "adversarial": "eps"}


def selection_score(clean: float, robust: float | None, select: str, robust_weight: float = 0.5) -> float:
    """The number a sweep maximises (finetune.select): validation top-1 ('clean'), validation L2-PGD robust top-1
    ('robust'), or (1 − w)·clean + w·robust ('mix')."""
    if select == "clean":
        return clean
    if robust is None:
        raise ValueError(f"select = {select!r} needs the validation robust accuracy")
    if select == "robust":
        return robust
    if select == "mix":
        return (1.0 - robust_weight) * clean + robust_weight * robust
    raise ValueError(f"unknown selection criterion {select!r}; allowed: clean, robust, mix")


def eval_device() -> torch.device:
    """The device this process evaluates on (the accelerator's, as training used)."""
    from accelerate import PartialState

    return PartialState().device


def validation_scores(model: Classifier, val: Dataset, recipe: Recipe) -> dict[str, float]:
    """Validation top-1, the robust top-1 when the criterion needs it, and the criterion's score."""
    ft, size = recipe.finetune, recipe.data.image_size
    device = eval_device()
    model = model.to(device)
    scores = {"val_top1": streaming_top1(model, val, size, recipe.eval.batch_size, recipe.data.workers, device)}
    if ft.select != "clean":
        scores["val_robust_top1"] = robust_top1(model, val, recipe, device)
    scores["score"] = selection_score(scores["val_top1"], scores.get("val_robust_top1"), ft.select,
                                      ft.select_robust_weight)
    return scores


def robust_top1(model: Classifier, ds: Dataset, recipe: Recipe, device: torch.device) -> float:
    """L2-PGD robust top-1 (%) with the recipe's eval.adversarial settings on (at most eval.adversarial.limit
    images of) `ds`, the images framed as the adversarial evaluation suite frames test images."""
    from urrlkit.evaluate.builtin_suites import attack_images, recipe_pgd

    x, y = attack_images(ds, recipe.eval.adversarial.limit, recipe)  # the adversarial suite's subset and attack
    return float(recipe_pgd(model, x, y, recipe, device)["robust_top1"])


def apply_cli(recipe: Recipe, reg: str | None, reg_weight: float | None) -> Recipe:
    """`--reg` / `--reg-weight` are shorthands for [finetune.regularizer] fields: the recipe with their
    overrides (`cli_overrides`) applied as `--set` applies them, validated once."""
    sets = cli_overrides(recipe.finetune.regularizer.type, reg, reg_weight)
    return with_overrides(recipe, sets, "--reg") if sets else recipe


def cli_overrides(current: str, reg: str | None, reg_weight: float | None) -> list[str]:
    """The `--set` overrides `--reg` / `--reg-weight` stand for, `current` being the recipe's regularizer type:
    `--reg` sets finetune.regularizer.type (a different type starts from that type's defaults, as with --set),
    `--reg-weight` the weight field of the resulting type (REG_WEIGHT_FIELD: λ of sim, α of l2sp, ε of
    adversarial)."""
    sets = [] if reg is None else [f"finetune.regularizer.type={json.dumps(reg)}"]
    if reg_weight is not None:
        kind = current if reg is None else reg
        field = REG_WEIGHT_FIELD.get(kind)
        if field is None:
            raise RecipeError(f"--reg-weight: regularizer {kind!r} has no weight")
        sets.append(f"finetune.regularizer.{field}={reg_weight!r}")  # repr: TOML reads nan/inf/1e-05 back
    return sets


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


def check_grid(recipe: Recipe, grid: dict[str, list[Any]]) -> None:
    """RecipeError unless there is validation data to choose on (finetune.val_fraction > 0) and every value of
    the sweep `grid` gives a valid recipe."""
    if not grid:
        return
    if recipe.finetune.val_fraction <= 0:
        raise RecipeError("finetune.val_fraction must be > 0 to sweep (choices are made on validation data)")
    for key, values in grid.items():
        for value in values:
            with_settings(recipe, {key: value})


def with_settings(recipe: Recipe, settings: dict[str, Any]) -> Recipe:
    """The recipe with [finetune] keys ('lr', 'regularizer.weight', …) set to `settings`."""
    return with_overrides(recipe, [f"finetune.{k}={v!r}" for k, v in settings.items()], "finetune.sweep")


def with_overrides(recipe: Recipe, sets: list[str], source: str) -> Recipe:
    """The recipe with `--set`-style overrides applied (config's apply_overrides), validated; errors name
    `source`."""
    return validate_dict(apply_overrides(recipe.to_dict(), sets), source)


def train_split(recipe: Recipe) -> Dataset:
    """The downstream set's full training split as fine-tuning reads it."""
    from urrlkit.evaluate.corruptions.framing import source_size

    dataset = recipe.finetune.dataset or recipe.data.dataset
    # Arrays smaller than the stored size (CIFAR's 32 px for a 224 network) stay native: the training crop is
    # drawn on them and upsampled once, as Salman et al.'s RandomResizedCrop(224) on the 32-px image.
    native = source_size(dataset, recipe.data.root, "train")
    return from_config(recipe.data, "train", dataset=dataset,
                       size=native if native and native < recipe.data.stored_size else None)


def finetune_once(recipe: Recipe, pretrained: Encoder, out_dir: Path, with_val: bool, resume: bool = False,
                  stop_after: int | None = None) -> tuple[Classifier, dict[str, float]]:
    """Train one model. with_val: on the training split less finetune.val_fraction, scored on that held-out part
    (a sweep trial); otherwise on the full training split."""
    ft = recipe.finetune
    full_train = train_split(recipe)
    train, val = split_train_val(full_train, ft.val_fraction if with_val else 0.0, seed=recipe.run.seed)
    if with_val and val is None:
        raise RecipeError(f"finetune.val_fraction = {ft.val_fraction} holds out no image of the "
                          f"{dataset_len(full_train)} training images; a sweep needs validation data")
    model_cls = LinearProbe if ft.protocol == "linear" else Classifier
    torch.manual_seed(recipe.run.seed)  # the head's initialisation is part of the run's seed
    model = model_cls(copy.deepcopy(pretrained), num_classes(full_train))
    model = train_classifier(recipe, model, train, ft, out_dir / "checkpoints", ft.regularizer,
                             pretrained=pretrained, resume=resume, stop_after=stop_after)
    scores: dict[str, float] = {"train_images": dataset_len(train)}
    if val is not None:
        scores.update(validation_scores(model, val, recipe))
    return model, scores


def run_finetune(recipe: Recipe, source: str, reg: str | None = None, reg_weight: float | None = None,
                 sweep: list[str] | None = None, resume: bool = False) -> Path:
    """Fine-tune the encoder at `source` (run dir, model dir, .safetensors or Hub id) as the recipe says: choose
    the sweep's settings on the validation split (if the recipe or --sweep gives a grid), then train the final
    model on the full training split and evaluate it on test."""
    from urrlkit.evaluate.inputs import check_model_input
    from urrlkit.hub import load_backbone, save_model

    # Everything the command line and the recipe say is checked before the output directory exists, so a typo
    # leaves nothing behind (each --sweep value is validated in the recipe it will be tried in).
    recipe = apply_cli(recipe, reg, reg_weight)
    grid = parse_sweep(sweep or [], recipe.finetune.sweep)
    check_grid(recipe, grid)
    pretrained = load_backbone(source)
    check_model_input(pretrained, recipe)  # a ViT takes one image side: say so before anything is written
    train = train_split(recipe)  # a missing or unreadable split is found before anything is written
    test = eval_split(recipe.data, "test", dataset=recipe.finetune.dataset)
    kind = recipe.finetune.regularizer.type
    out = recipe.run_dir / f"finetune-{kind}"
    if out.exists() and (out / "checkpoints" / "latest").exists() and not resume:
        raise UrrlError(f"{out}: a fine-tune run exists; pass --resume to continue it or change run.name")
    from urrlkit.engine.lock import check_resume_recipe, lock_run_dir

    lock_run_dir(out)  # creates it; one writer per fine-tune directory (urrlkit/engine/lock.py)
    if grid:
        recipe = _settle(recipe, pretrained, out, grid, resume)
    if resume:
        check_resume_recipe(recipe, out / "recipe.toml")  # before recipe.toml is rewritten
    to_file(recipe, out / "recipe.toml")
    ft = recipe.finetune
    model, scores = finetune_once(recipe, pretrained, out, with_val=False, resume=resume)
    from urrlkit.evaluate.suites import check_label_space
    from urrlkit.evaluate.workflow import evaluate_model

    check_label_space(model, test, ft.dataset or recipe.data.dataset)  # a test split with classes train lacks
    device = eval_device()
    model = model.to(device)
    scores["test_top1"] = streaming_top1(model, test, recipe.data.image_size, recipe.eval.batch_size,
                                         recipe.data.workers, device)
    save_model(model, out / "model", recipe, stage="finetune", source=str(source),
               regularizer=ft.regularizer.model_dump(), classes=class_names(train, test))
    (out / "finetune.json").write_text(json.dumps(scores, indent=2))
    console.print(f"fine-tuned ({kind}) on {ft.dataset or recipe.data.dataset} ({scores['train_images']} training "
                  f"images): test_top1 {scores['test_top1']:.2f}%  → {out / 'model'}", markup=False)
    if recipe.eval.suites:
        evaluate_model(model, recipe, list(recipe.eval.suites), out / "eval", name=str(out / "model"))
    return out


def class_names(train: Dataset, test: Dataset) -> list[str]:
    """The class names the model's outputs stand for: the training split's (the head was trained on its label
    indices), the test split's when the training split names none. Evaluation maps a test split by these names."""
    return [str(c) for c in (getattr(train, "classes", None) or getattr(test, "classes", None) or [])]


def _settle(recipe: Recipe, pretrained: Encoder, out: Path, grid: dict[str, list[Any]], resume: bool) -> Recipe:
    """The recipe with the sweep's chosen settings; a resumed run reuses a finished sweep over the same keys."""
    record_path = out / "sweep.json"
    if resume and record_path.is_file():
        from urrlkit.engine.untrusted import read_json

        try:  # damaged by a crash mid-write on an older urrlkit, or by hand
            record = read_json(record_path, "sweep record", error=UrrlError)
        except UrrlError as exc:
            raise UrrlError(f"{exc}; delete it to run the sweep again") from None
        chosen = record.get("chosen") if isinstance(record, dict) else None
        if isinstance(chosen, dict) and set(chosen) == set(grid):
            console.print(f"sweep: reusing the choice in {record_path}: {chosen}", markup=False)
            return with_settings(recipe, chosen)
    record = sweep_settings(recipe, pretrained, out, grid)
    record_path.write_text(json.dumps(record, indent=2))
    return with_settings(recipe, record["chosen"])


def sweep_settings(recipe: Recipe, pretrained: Encoder, out: Path, grid: dict[str, list[Any]]) -> dict[str, Any]:
    """Train one model per grid point on the training split less finetune.val_fraction, score it on the held-out
    part by finetune.select, and return the record written to sweep.json (criterion, every trial's scores, the
    chosen settings). The test split is never looked at here."""
    ft = recipe.finetune
    check_grid(recipe, grid)
    keys = list(grid)
    trials: list[dict[str, Any]] = []
    for values in itertools.product(*(grid[k] for k in keys)):
        settings = dict(zip(keys, values, strict=True))
        tdir = out / "sweep" / "_".join(f"{k.split('.')[-1]}{v:g}" for k, v in settings.items())
        shutil.rmtree(tdir, ignore_errors=True)
        _, scores = finetune_once(with_settings(recipe, settings), pretrained, tdir, with_val=True)
        trials.append({"settings": settings, **scores})
        console.print(f"sweep {settings}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()
                                                          if k != "train_images"), markup=False)
    best = max(range(len(trials)), key=lambda i: trials[i]["score"])  # the first of equal scores wins
    return {"select": ft.select, "select_robust_weight": ft.select_robust_weight, "val_fraction": ft.val_fraction,
            "trials": trials, "chosen": trials[best]["settings"]}
