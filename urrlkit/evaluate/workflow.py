"""`urrl eval`, the evaluation workflow: load a classifier (run dir, model dir, .safetensors or Hub id), run the
suites (urrlkit/evaluate/suites.py) on the recipe's test data, write `<out_dir>/results.json` and PNG plots,
print a Rich table. `evaluate_model` is the same for an in-memory model (the pretraining's linear evaluation and
`urrl finetune` call it); see docs/evaluation.md for the metric definitions and the results layout.

The three stage workflows share one shape: `urrlkit/<stage>/workflow.py` with `run_<command>` as the CLI's
entry (pretext: run_pretrain, finetune: run_finetune, evaluate: run_eval).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from urrlkit.config import Recipe
from urrlkit.engine.statefile import atomic_write_bytes
from urrlkit.engine.writable import check_writable_dir, check_writable_file
from urrlkit.errors import CheckpointError, RecipeError, UrrlError
from urrlkit.evaluate.builtin_suites import get_suite
from urrlkit.evaluate.suites import plan_suites, run_suites
from urrlkit.evaluate.table import results_table
from urrlkit.results import EvalResults

__all__ = ["default_out_dir", "evaluate_model", "model_architecture", "print_results",
           "recipe_from_model", "run_eval"]


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
    out_dir = Path(out_dir)
    # Refuse unwritable outputs before the suites run (minutes to hours), not after results.json is written.
    check_writable_dir(out_dir, "--out")
    if robustbench_json is not None:
        robustbench_json = Path(robustbench_json)
        check_writable_file(robustbench_json, "--robustbench-json")
        basic, bench = plan_suites(suites, recipe)
        if "autoattack" not in basic and bench is None:  # say so before the evaluation, not after
            raise UrrlError("--robustbench-json: needs the autoattack suite or a corruption suite "
                            "(e.g. --suite clean --suite autoattack)")
    results = run_suites(model, recipe, suites, name, console)
    data = results.to_dict()
    # Atomic writes: a full disk leaves no half-written results.json or plot, and is one line naming the file.
    atomic_write_bytes(out_dir / "results.json", json.dumps(data, indent=2).encode())
    from urrlkit.evaluate.plots import save_plots

    data["plots"] = save_plots(results, out_dir)
    if robustbench_json is not None:
        from urrlkit.evaluate.robustbench import to_robustbench

        claim = to_robustbench(results, name=Path(name).name if name else "",
                               architecture=model_architecture(model, recipe))
        atomic_write_bytes(robustbench_json, (json.dumps(claim, indent=2) + "\n").encode())
        console.print(f"RobustBench model info: {robustbench_json}", markup=False)
    print_results(results, console)
    console.print(f"results: {out_dir / 'results.json'}", markup=False)
    return data


def model_architecture(model: nn.Module, recipe: Recipe) -> str:
    """The evaluated model's own backbone description (a loaded model need not be the recipe's [model])."""
    from urrlkit.models.backbones import Encoder, describe_encoder

    enc = getattr(model, "encoder", model)
    return describe_encoder(enc) if isinstance(enc, Encoder) and enc.spec else recipe.model.describe()


def print_results(results: EvalResults | dict[str, Any], console: Console) -> None:
    if not isinstance(results, EvalResults):
        results = EvalResults.from_dict(results)
    console.print(results_table(results))


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

