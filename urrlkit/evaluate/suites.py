"""`urrl eval`: run registered evaluation suites (clean top-1, calibration, L2-PGD, AutoAttack, corruption
benchmarks; urrlkit/evaluate/builtin_suites.py) on a classifier.

`evaluate_model` (used by the training engine and by `run_eval`) writes `<out_dir>/results.json` from the
suites' typed results (urrlkit/results.py), prints a Rich table and saves PNG plots; see
docs/evaluation.md for the metric definitions and the results layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from urrlkit.config import Recipe
from urrlkit.errors import CheckpointError, RecipeError, UrrlError
from urrlkit.evaluate.builtin_suites import CORRUPTION_BENCHMARKS, EvalContext, Suite, get_suite
from urrlkit.evaluate.inputs import check_label_space, eval_split, model_device
from urrlkit.evaluate.table import results_table
from urrlkit.registry import SUITES
from urrlkit.results import EvalResults, Metrics, Result, write_results
from urrlkit.version import __version__

BENCHMARKS = CORRUPTION_BENCHMARKS

__all__ = ["check_label_space", "default_out_dir", "eval_test_set", "evaluate_model", "plan_suites",
           "print_results", "recipe_from_model", "run_eval", "run_suites"]


def _expand(names: Iterable[str], seen: set[str] | None = None) -> list[Suite]:
    """The suites named, groups (`all`) replaced by their members."""
    seen = set() if seen is None else seen
    out: list[Suite] = []
    for name in names:
        s = get_suite(name)
        if s.includes:
            if name not in seen:  # a group that includes itself would never end
                seen.add(name)
                out += _expand(s.includes, seen)
        else:
            out.append(s)
    return out


def plan_suites(suites: Iterable[str], recipe: Recipe) -> tuple[list[str], str | None]:
    """(suites to run in order, corruption benchmark or None) for the requested suite names. Suites run in
    registration order (clean, calibration, adversarial, autoattack, then users' suites); at most one corruption
    benchmark per evaluation, run last."""
    basic: set[str] = set()
    bench: set[str] = set()
    for s in _expand(suites):
        if s.benchmark is not None:
            bench.add(s.benchmark or recipe.eval.corruptions.benchmark)
        else:
            basic.add(s.name)
    if len(bench) > 1:
        raise UrrlError(f"--suite: one corruption benchmark per evaluation, got {', '.join(sorted(bench))}")
    order = [n for n in SUITES.in_order() if n in basic]
    return order, (bench.pop() if bench else None)


def eval_test_set(recipe: Recipe) -> torch.utils.data.Dataset:
    """The recipe's test split as evaluation reads it (`inputs.eval_split`)."""
    return eval_split(recipe.data, "test")


def run_suites(model: nn.Module, recipe: Recipe, suites: list[str], name: str = "",
               console: Console | None = None) -> EvalResults:
    """Run the suites on an in-memory classifier ([0, 1] input, logits out); the typed results, nothing written."""
    console = console or Console(highlight=False)
    basic, bench = plan_suites(suites, recipe)
    if not basic and bench is None:
        raise UrrlError("eval.suites: nothing to evaluate")
    check_model_input(model, recipe)
    device = model_device(model)
    was_training = model.training
    model.eval()
    need_test = any(get_suite(n).needs_test for n in basic) or bench == "generated"
    test_ds = eval_test_set(recipe) if need_test else None
    if bench is not None and bench != "generated" and test_ds is None:
        try:
            test_ds = eval_test_set(recipe)
        except UrrlError:
            test_ds = None  # class names then come from the -C folders
    if test_ds is not None:
        check_label_space(model, test_ds, recipe.data.dataset)
    ctx = EvalContext(model, recipe, device, console, test_ds, bench)
    res: dict[str, Result] = {}
    try:
        for n in basic:
            s = get_suite(n)
            assert s.run is not None and s.key is not None
            res[s.key] = s.run(ctx)
        if bench is not None:
            console.print(f"corruptions ({bench}):", markup=False)
            s = get_suite(bench if bench in CORRUPTION_BENCHMARKS else "corruptions")
            assert s.run is not None and s.key is not None
            res[s.key] = s.run(ctx)
    finally:
        model.train(was_training)
    return EvalResults(
        model=name,
        recipe_hash=recipe.digest(),
        dataset=recipe.data.dataset,
        image_size=recipe.data.image_size,
        test_limit=recipe.data.test_limit,
        urrlkit_version=__version__,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        device=str(device),
        metrics=Metrics(**res),
    )


def evaluate_model(
    model: nn.Module,
    recipe: Recipe,
    suites: list[str],
    out_dir: Path,
    name: str = "",
    console: Console | None = None,
    robustbench_json: Path | None = None,
) -> dict[str, Any]:
    """Evaluate an in-memory classifier ([0, 1] input, logits out) on the recipe's test data; write
    `<out_dir>/results.json` and plots (and, with `robustbench_json`, RobustBench's model-info claim), print a
    table, and return the results dict (results.json's content plus `plots`)."""
    console = console or Console(highlight=False)
    if robustbench_json is not None:
        basic, bench = plan_suites(suites, recipe)
        if "autoattack" not in basic and bench is None:  # say so before the evaluation, not after
            raise UrrlError("--robustbench-json: needs the autoattack suite or a corruption suite "
                            "(e.g. --suite clean --suite autoattack)")
    results = run_suites(model, recipe, suites, name, console)
    out_dir = Path(out_dir)
    write_results(results, out_dir / "results.json")
    from urrlkit.evaluate.plots import save_plots

    data = results.to_dict()
    data["plots"] = save_plots(results, out_dir)
    if robustbench_json is not None:
        from urrlkit.evaluate.robustbench import write_robustbench

        write_robustbench(results, robustbench_json, name=Path(name).name if name else "",
                          architecture=model_architecture(model, recipe))
        console.print(f"RobustBench model info: {robustbench_json}", markup=False)
    print_results(results, console)
    console.print(f"results: {out_dir / 'results.json'}", markup=False)
    return data


def check_model_input(model: nn.Module, recipe: Recipe) -> None:
    """UrrlError naming data.image_size when the model's backbone takes another image side only (a ViT's patch
    grid): every suite frames test images to data.image_size (evaluate/inputs.py)."""
    from urrlkit.models.backbones import Encoder, check_input_size

    enc = getattr(model, "encoder", model)
    if isinstance(enc, Encoder):
        try:
            check_input_size(enc, recipe.data.image_size)
        except ValueError as exc:
            raise UrrlError(str(exc)) from None


def model_architecture(model: nn.Module, recipe: Recipe) -> str:
    """The evaluated model's own backbone description (a loaded model need not be the recipe's [model])."""
    from urrlkit.models.backbones import Encoder, describe_encoder

    enc = getattr(model, "encoder", model)
    return describe_encoder(enc) if isinstance(enc, Encoder) and enc.spec else recipe.model.describe()


def print_results(results: EvalResults | dict[str, Any], console: Console) -> None:
    if not isinstance(results, EvalResults):
        results = EvalResults.from_dict(results)
    console.print(results_table(results))


# ----------------------------------------------------------------------------------------------- CLI entry


def default_out_dir(model: str) -> Path:
    from urrlkit.hub import resolve_local

    local = resolve_local(model)
    if local is None:
        # A Hub id: results go to a local folder named after it, never into the read-only cache.
        from urrlkit.hub.ids import parse_hub_id

        hub_id = parse_hub_id(model)
        if hub_id is None:
            raise CheckpointError(f"{model}: no run directory, model directory or .safetensors file here")
        return Path("eval") / hub_id.repo_id.replace("/", "__") / (hub_id.revision or "main")
    given = Path(model).expanduser()
    model_dir = local.parent if local.is_file() else local
    if model_dir != given and model_dir == given / "model":
        return given / "eval"
    if model_dir.name == "model":
        return model_dir.parent / "eval"
    return model_dir / "eval"


def recipe_from_model(model: nn.Module, source: str, overrides: list[str]) -> Recipe:
    from urrlkit.config import apply_overrides, validate_dict
    from urrlkit.config.legacy import upgrade

    cfg = getattr(model, "config", {}) or {}
    data = cfg.get("recipe")
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: config.json stores no recipe; pass one with --recipe")
    # upgrade: a model saved by an older urrlkit recorded the flat [pretext] of every method's fields
    return validate_dict(apply_overrides(upgrade(data), overrides), f"{source} (config.json recipe)")


def run_eval(
    model: str,
    recipe: Recipe | None = None,
    overrides: list[str] | None = None,
    suites: list[str] | None = None,
    out_dir: Path | None = None,
    robustbench_json: Path | None = None,
) -> dict[str, Any]:
    """Load `model` (run dir, model dir or .safetensors), evaluate the suites, write results beside it."""
    from urrlkit.hub import load_model
    from urrlkit.models import Classifier

    for s in suites or []:
        get_suite(s)  # a misspelt --suite fails before the model loads
    m = load_model(model)
    if not isinstance(m, Classifier):
        raise CheckpointError(
            f"{model}: is an encoder without a classifier head; evaluate a fine-tuned or "
            "linear-evaluated model"
        )
    if recipe is None:
        recipe = recipe_from_model(m, str(model), overrides or [])
    out = Path(out_dir) if out_dir is not None else default_out_dir(model)
    if torch.cuda.is_available():
        m = m.cuda()
    return evaluate_model(m, recipe, list(suites or recipe.eval.suites), out, name=str(model),
                          robustbench_json=robustbench_json)

