"""Running registered evaluation suites (clean top-1, calibration, L2-PGD, AutoAttack, corruption benchmarks;
urrlkit/evaluate/builtin_suites.py) on a classifier, into typed results (urrlkit/results.py). The `urrl eval`
workflow around it is urrlkit/evaluate/workflow.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import torch
from rich.console import Console
from torch import nn

from urrlkit.config import Recipe
from urrlkit.errors import UrrlError
from urrlkit.evaluate.builtin_suites import CORRUPTION_BENCHMARKS, EvalContext, Suite, get_suite
from urrlkit.evaluate.inputs import check_label_space, check_model_input, eval_split, model_device
from urrlkit.registry import SUITES
from urrlkit.results import EvalResults, Metrics, Result
from urrlkit.version import __version__

BENCHMARKS = CORRUPTION_BENCHMARKS

__all__ = ["check_label_space", "eval_test_set", "plan_suites", "run_suites"]


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
        note = check_label_space(model, test_ds, recipe.data.dataset)
        if note:
            console.print(note, markup=False, soft_wrap=True)
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
