"""The replica's steps: the methods and transfer rows, the budgets' overrides, and `plan` — every `urrl` command
of the run in order, each with the file that marks it done."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from urrlkit.config import load
from urrlkit.errors import UrrlError

ROOT = Path(__file__).resolve().parents[3]  # the repository root (urrlkit/experiments/replica/plan.py)
RECIPES = Path("recipes/replica")
METHODS = ["moco_v2", "augmix", "augmix_allop", "augmix_moco", "urrl"]
TRANSFER_ENCODERS = ["moco_v2", "urrl"]
# The paper's Table 2 rows (encoder, regularizer); adversarial training is one reference row (from URRL here).
TRANSFER = [("moco_v2", "none"), ("moco_v2", "sim"), ("urrl", "none"), ("urrl", "l2sp"), ("urrl", "sim"),
            ("urrl", "adversarial")]
UNTRAINED = "untrained"  # Table 1's floor: the same encoder, randomly initialised, linear-evaluated
LABELS = {"moco_v2": "MoCo v2", "augmix": "AugMix", "augmix_allop": "AugMix (AllOp)",
          "augmix_moco": "AugMix (MoCo)", "urrl": "URRL", UNTRAINED: "untrained encoder (floor)"}
# Overrides per budget; "cpu" is the recipes as written (sized for ≤ 90 minutes on 2 cores).
BUDGETS: dict[str, dict[str, list[str]]] = {
    "cpu": {"linear": [], "pretrain": [], "finetune": []},
    "gpu": {"linear": [],
            "pretrain": ["data.image_size=64", "model.backbone=resnet18", "model.width=64", "optim.epochs=100",
                         "data.train_limit=100000", "eval.corruptions.limit=200"],
            "finetune": ["model.backbone=resnet18", "model.width=64", "finetune.epochs=30", "data.train_limit=20000",
                         "eval.corruptions.limit=200", "eval.adversarial.limit=1000"]},
    # Every step on a few hundred images: checks the whole pipeline end to end in minutes; numbers mean nothing.
    "smoke": {"linear": ["--labels", "1000"],
              "pretrain": ["data.train_limit=256", "data.test_limit=200", "optim.epochs=1", "pretext.queue_size=256",
                           "linear_eval.epochs=1", "eval.corruptions.limit=1"],
              "finetune": ["data.train_limit=300", "data.test_limit=200", "finetune.epochs=1",
                           "eval.corruptions.limit=1", "eval.adversarial.limit=8", "eval.adversarial.steps=2"]},
}

@dataclass
class Step:
    """One CLI invocation; `done` is the file whose existence marks it finished. `late` computes extra arguments
    when the step runs (a later seed reusing the first seed's validation choice, which exists only by then)."""

    key: str
    args: list[str]
    done: Path
    resume_marker: Path | None = None
    late: Callable[[], list[str]] | None = None

    def command(self, resume: bool = False) -> list[str]:
        return [*self.args, *(["--resume"] if resume else []), *(self.late() if self.late else [])]

    def shown(self) -> str:
        return _shell(self.args) + (" --set finetune.sweep={} --set finetune.<the first seed's choice>"
                                    if self.late else "")


def pretrain_dir(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / f"ti-{method}-s{seed}"


def finetune_dir(out: Path, method: str, seed: int, reg: str) -> Path:
    return out / "runs" / f"c10-{method}-s{seed}" / f"finetune-{reg}"


def _sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def best_settings(sweep_json: Path) -> dict[str, Any]:
    """The settings a sweep.json written by `urrl finetune` chose (by its recorded criterion, finetune.select); an
    older sweep.json (a bare list of trials) chose by validation top-1."""
    record = json.loads(Path(sweep_json).read_text())
    if isinstance(record, dict):
        return record["chosen"]
    return max(record, key=lambda t: t.get("val_top1", -1))["settings"]


def _reuse(sweep_json: Path) -> Callable[[], list[str]]:
    def late() -> list[str]:
        if not sweep_json.is_file():
            raise UrrlError(f"{sweep_json}: the first seed's sweep is missing; run the replica from its first seed")
        chosen = best_settings(sweep_json)
        return _sets(["finetune.sweep={}", *(f"finetune.{k}={v}" for k, v in chosen.items())])

    return late


def plan(out: Path, seeds: list[int], budget: str = "cpu") -> list[Step]:
    """Every step of the replica, in order: the untrained floor, pretrain → linear eval for every method and seed,
    then the transfer runs. Regularizer strengths are swept on validation data for the first seed only; later
    seeds reuse that choice (the sweep is a hyperparameter choice, the seeds measure its spread)."""
    if budget not in BUDGETS:
        raise UrrlError(f"--budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    b = BUDGETS[budget]
    runs = out / "runs"
    steps: list[Step] = []
    floor = pretrain_dir(out, UNTRAINED, seeds[0])
    common = [f"run.seed={seeds[0]}", f"run.name={floor.name}", f"run.output_dir={runs}", *b["pretrain"]]
    steps.append(Step(f"linear/{UNTRAINED}/s{seeds[0]}",
                      ["python", "-m", "urrlkit.experiments.replica", "linear-eval", str(RECIPES / "moco_v2.toml"),
                       str(floor), "--untrained", *b["linear"], *_sets(common)],
                      floor / "linear" / "eval" / "results.json"))
    for seed in seeds:
        for m in METHODS:
            run = pretrain_dir(out, m, seed)
            common = [f"run.seed={seed}", f"run.name={run.name}", f"run.output_dir={runs}", *b["pretrain"]]
            recipe = str(RECIPES / f"{m}.toml")
            steps.append(Step(f"pretrain/{m}/s{seed}", ["urrl", "pretrain", recipe, "--no-linear-eval",
                                                         *_sets(common)],
                              run / "model" / "model.safetensors", run / "checkpoints" / "latest"))
            steps.append(Step(f"linear/{m}/s{seed}", ["python", "-m", "urrlkit.experiments.replica", "linear-eval",
                                                      recipe, str(run), *b["linear"], *_sets(common)],
                              run / "linear" / "eval" / "results.json"))
    swept = {reg: bool(load(RECIPES / f"cifar10_{reg}.toml").finetune.sweep) for _, reg in TRANSFER}
    for seed in seeds:
        for m, reg in TRANSFER:
            src = pretrain_dir(out, m, seed)
            ft = finetune_dir(out, m, seed, reg)
            ft_recipe = RECIPES / f"cifar10_{reg}.toml"
            sets = [f"run.seed={seed}", f"run.name={ft.parent.name}", f"run.output_dir={runs}", *b["finetune"]]
            reuse = swept[reg] and seed != seeds[0]
            late = _reuse(finetune_dir(out, m, seeds[0], reg) / "sweep.json") if reuse else None
            steps.append(Step(f"finetune/{m}/{reg}/s{seed}",
                              ["urrl", "finetune", str(ft_recipe), "--from", str(src), *_sets(sets)],
                              ft / "eval" / "results.json", ft / "checkpoints" / "latest", late))
    return steps


def _shell(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in cmd)
