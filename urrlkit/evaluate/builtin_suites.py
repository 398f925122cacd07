"""Evaluation suites as registered objects (`urrlkit.registry.SUITES`, declared torch-free in urrlkit/catalog so
recipe validation checks `eval.suites` against them): each has a name, says what it needs, and its `run`
returns a typed result (urrlkit/results.py) stored under `metrics.<key>` of results.json.

Register your own with the same shape:

    SUITES.add("my-suite", Suite("my-suite", key="my_key", run=lambda ctx: MyResult(...)))

and its result is written under `metrics.my_key` (a `Result` subclass; unknown keys are kept).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import Dataset

from urrlkit.config import Recipe
from urrlkit.errors import UrrlError
from urrlkit.evaluate import metrics
from urrlkit.evaluate.corruptions.framing import frame
from urrlkit.evaluate.inputs import loader, predict_batches, take_subset
from urrlkit.registry import SUITES
from urrlkit.results import (
    AutoAttackResult,
    CalibrationResult,
    CleanResult,
    PGDResult,
    Result,
)

CORRUPTION_BENCHMARKS = ("cifar10-c", "cifar100-c", "imagenet-c", "tiny-imagenet-c")


@dataclass
class EvalContext:
    """What a suite runs on: the model (eval mode, on `device`), the recipe, the test split (None when only an
    official corruption set is evaluated and the split is absent) and the corruption benchmark of this run."""

    model: nn.Module
    recipe: Recipe
    device: torch.device
    console: Console
    test_ds: Dataset | None
    benchmark: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def need_test(self) -> Dataset:
        if self.test_ds is None:
            raise UrrlError("evaluation: this suite needs the recipe's test split (data.dataset / data.root)")
        return self.test_ds

    def clean_pass(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(predictions, confidences, labels) on the whole test split, computed once for every suite."""
        if "clean" not in self._cache:
            ev, d = self.recipe.eval, self.recipe.data
            self._cache["clean"] = predict_batches(
                self.model, loader(self.need_test(), ev.batch_size, d.workers), d.image_size, self.device)
        return self._cache["clean"]

    def attack_subset(self, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The test images both attacks run on (`attack_images`; a smaller limit takes a subset of a larger
        one's images)."""
        return attack_images(self.need_test(), limit, self.recipe)


def attack_images(ds: Dataset, limit: int | None, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed random subset of `limit` images of `ds` (as `data.test_limit` picks them), framed to the network
    size, uint8 on the CPU."""
    x, y = take_subset(ds, limit, recipe.eval.batch_size, recipe.data.workers)
    return frame(x, recipe.data.image_size), y


def recipe_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, device: torch.device
               ) -> dict[str, Any]:
    """L2-PGD robust accuracy with the recipe's eval.adversarial settings and run seed: the adversarial suite,
    and the fine-tuning sweep's robust score on the validation split."""
    from urrlkit.evaluate.attacks import robust_accuracy

    a = recipe.eval.adversarial
    return robust_accuracy(model, x, y, eps=a.eps, steps=a.steps, step_size=a.step_size,
                           random_start=a.random_start, use_best=a.use_best, batch_size=recipe.eval.batch_size,
                           seed=recipe.run.seed, device=device)


@dataclass(frozen=True)
class Suite:
    """An evaluation suite. `key`: where its result goes in `metrics`; `needs_test`: reads the recipe's test
    split; `benchmark`: a corruption suite's benchmark ("" = the recipe's eval.corruptions.benchmark);
    `includes`: a group standing for other suites (`all`)."""

    name: str
    key: str | None = None
    run: Callable[[EvalContext], Result] | None = None
    needs_test: bool = True
    benchmark: str | None = None
    includes: tuple[str, ...] = ()
    help: str = ""


def _clean(ctx: EvalContext) -> Result:
    pred, _, lab = ctx.clean_pass()
    return CleanResult(top1=100 * float((pred == lab).mean()), n=int(lab.size))


def calibration_result(conf: np.ndarray, correct: np.ndarray, bin_size: int) -> CalibrationResult:
    """RMS calibration error (all bins and the reference code's legacy), ECE and the reliability diagram (%)."""
    return CalibrationResult(
        rms=100 * metrics.rms_calibration_error(conf, correct, bin_size),
        rms_legacy=100 * metrics.rms_calibration_error(conf, correct, bin_size, legacy=True),
        ece=100 * metrics.expected_calibration_error(conf, correct),
        bin_size=bin_size,
        ece_bins=15,
        n=int(conf.size),
        reliability=metrics.reliability_diagram(conf, correct),
    )


def _calibration(ctx: EvalContext) -> Result:
    pred, conf, lab = ctx.clean_pass()
    return calibration_result(conf, (pred == lab).astype(np.float64), ctx.recipe.eval.calibration.bin_size)


def _adversarial(ctx: EvalContext) -> Result:
    x, y = ctx.attack_subset(ctx.recipe.eval.adversarial.limit)
    return PGDResult(**recipe_pgd(ctx.model, x, y, ctx.recipe, ctx.device))


def _autoattack(ctx: EvalContext) -> Result:
    from urrlkit.evaluate.autoattack import autoattack_accuracy

    aa = ctx.recipe.eval.autoattack
    x, y = ctx.attack_subset(aa.limit)
    return AutoAttackResult(**autoattack_accuracy(
        ctx.model, x, y, eps=aa.eps, norm=aa.norm, version=aa.version, batch_size=ctx.recipe.eval.batch_size,
        seed=ctx.recipe.run.seed, device=ctx.device))


def _corruptions(ctx: EvalContext) -> Result:
    from urrlkit.evaluate.corruption_suite import run_corruptions

    bench = ctx.benchmark or ctx.recipe.eval.corruptions.benchmark
    clean_err = None
    if bench == "imagenet-c" and ctx.test_ds is not None:  # relative mCE needs the clean error
        pred, _, lab = ctx.clean_pass()
        clean_err = float(1 - (pred == lab).mean())
    return run_corruptions(ctx.model, ctx.recipe, bench, ctx.test_ds, ctx.device, clean_err, ctx.console)


def _register() -> None:
    suites = [
        Suite("clean", "clean", _clean, help="top-1 on the recipe's test split"),
        Suite("calibration", "calibration", _calibration,
              help="RMS calibration error (all bins and legacy), ECE, reliability diagram"),
        Suite("adversarial", "adversarial", _adversarial,
              help="L2-PGD robust top-1 on eval.adversarial.limit test images"),
        Suite("autoattack", "autoattack", _autoattack,
              help="AutoAttack (standard, L2 ε 0.5) robust top-1 on eval.autoattack.limit test images; "
                   "needs urrlkit[autoattack]"),
        Suite("corruptions", "corruptions", _corruptions, needs_test=False, benchmark="",
              help="the benchmark named by eval.corruptions.benchmark"),
        *(Suite(b, "corruptions", _corruptions, needs_test=False, benchmark=b,
                help="official set read from eval.corruptions.root") for b in CORRUPTION_BENCHMARKS),
        Suite("all", includes=("clean", "calibration", "adversarial", "corruptions"),
              help="clean + calibration + adversarial + corruptions"),
    ]
    for s in suites:
        if s.name in SUITES._items:
            continue  # a user's suite registered under this name before this module was imported wins
        SUITES.add(s.name, s)


_register()


def get_suite(name: str, source: str = "--suite") -> Suite:
    """The registered suite `name`; one-line UrrlError naming `source` (with the nearest name) otherwise."""
    from urrlkit.registry import nearest

    if name not in SUITES:
        names = SUITES.in_order()
        raise UrrlError(f"{source}: unknown suite {name!r}{nearest(name, names)}; allowed: {', '.join(names)}")
    suite = SUITES.get(name)
    if not isinstance(suite, Suite):
        raise UrrlError(f"{source}: suite {name!r} is registered as {type(suite).__name__}, not a Suite")
    return suite


__all__ = ["CORRUPTION_BENCHMARKS", "EvalContext", "Suite", "attack_images", "calibration_result", "get_suite",
           "recipe_pgd"]
