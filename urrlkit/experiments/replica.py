"""`urrl replica`: the CPU-scale replica of the paper's Tables 1–3 (issue #8) in one command.

Table 1 analogue: pretrain every method of recipes/replica/{moco_v2,augmix,augmix_allop,augmix_moco,urrl}.toml on
Tiny-ImageNet, linear-evaluate on its labels (top-1, generated Tiny-ImageNet-C error, RMS calibration).
Tables 2–3 analogue: fine-tune the MoCo v2 and URRL encoders on CIFAR-10 with none / L2-SP / SR (α, λ chosen on a
validation split) / adversarial training; clean top-1, L2-PGD robust top-1, RMS calibration on CIFAR-10-C.
Every step runs the `urrl` CLI in a subprocess, skips what is finished (resumable), and the report
(docs/replica.md + plots) is rebuilt from the results JSONs, with mean ± sample std over seeds.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from urrlkit.config import load
from urrlkit.errors import UrrlError

ROOT = Path(__file__).resolve().parents[2]  # the repository root (urrlkit/experiments/replica.py)
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

# The paper's numbers (Tables 1–3).
PAPER_T1 = {"moco_v2": (67.59, 88.21, 15.30), "augmix": (61.45, 94.47, 16.17),
            "augmix_allop": (61.97, 92.34, 15.44), "augmix_moco": (64.41, 90.18, 15.31),
            "urrl": (68.47, 84.41, 14.64)}  # top-1, ImageNet-C mCE, RMS calibration
PAPER_T2 = {("moco_v2", "none"): (25.11, 81.68), ("urrl", "none"): (25.37, 81.77), ("urrl", "l2sp"): (28.08, 82.37),
            ("moco_v2", "sim"): (36.29, 77.85), ("urrl", "sim"): (36.72, 78.38),
            ("adversarial", ""): (46.25, 54.53)}  # robust, clean (12-dataset average)
PAPER_T3 = {("moco_v2", "none"): 16.96, ("urrl", "none"): 17.90, ("moco_v2", "sim"): 9.92, ("urrl", "sim"): 8.95}
REG_LABELS = {"none": "", "l2sp": "-L2SP", "sim": "-SR", "adversarial": " + adversarial training"}


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
            recipe = RECIPES / f"cifar10_{reg}.toml"
            sets = [f"run.seed={seed}", f"run.name={ft.parent.name}", f"run.output_dir={runs}", *b["finetune"]]
            reuse = swept[reg] and seed != seeds[0]
            late = _reuse(finetune_dir(out, m, seeds[0], reg) / "sweep.json") if reuse else None
            steps.append(Step(f"finetune/{m}/{reg}/s{seed}",
                              ["urrl", "finetune", str(recipe), "--from", str(src), *_sets(sets)],
                              ft / "eval" / "results.json", ft / "checkpoints" / "latest", late))
    return steps


def _shell(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in cmd)


def _run_step(step: Step, timings: dict[str, float]) -> None:
    resume = bool(step.resume_marker and step.resume_marker.exists())
    cmd = step.command(resume)
    print(f"$ {_shell(cmd)}", flush=True)
    # Shown as `urrl …` / `python …` (the report's commands); run with this interpreter.
    argv = ([sys.executable, "-m", "urrlkit.cli", *cmd[1:]] if cmd[0] == "urrl" else
            [sys.executable, *cmd[1:]] if cmd[0] == "python" else cmd)
    t0 = time.time()
    subprocess.run(argv, check=True, cwd=ROOT)
    timings[step.key] = round(time.time() - t0, 1)


def run_replica(out: Path, seeds: list[int], budget: str = "cpu", dry_run: bool = False,
                report: Path | None = None) -> list[Step]:
    """Run (or, with dry_run, print) every step of the replica, then write the report."""
    out = Path(out)
    steps = plan(out, seeds, budget)
    report = Path(report) if report else (out / "replica.md" if budget == "smoke" else ROOT / "docs" / "replica.md")
    if dry_run:
        for s in steps:
            state = "done" if s.done.exists() else "todo"
            print(f"[{state}] {s.key}: {s.shown()}")
        print(f"{len(steps)} steps; report → {report}")
        return steps
    out.mkdir(parents=True, exist_ok=True)
    tfile = out / "timings.json"
    timings: dict[str, float] = json.loads(tfile.read_text()) if tfile.exists() else {}
    for s in steps:
        if s.done.exists():
            print(f"[done] {s.key}", flush=True)
            continue
        _run_step(s, timings)
        tfile.write_text(json.dumps(timings, indent=2))
    data = collect(out, seeds)
    write_report(data, report, meta=machine_meta(steps, seeds, budget, timings))
    return steps


# ------------------------------------------------------------------------------------------- linear eval step


def linear_eval_main(argv: list[str]) -> None:
    """`python -m urrlkit.experiments.replica linear-eval RECIPE RUN_DIR [--untrained] [--labels N] [--set K=V ...]`:
    linear evaluation of a pretrained encoder on all labelled training images (the pretraining train_limit does not
    apply to the labels; --labels N keeps a fixed subset of N).
    --untrained evaluates the recipe's backbone at its random initialisation (seeded by run.seed): the floor that
    tells how much pretraining added."""
    import torch

    from urrlkit.finetune.linear import run_linear_eval
    from urrlkit.hub import load_backbone
    from urrlkit.models import build_encoder

    recipe_path, run_dir, rest = argv[0], Path(argv[1]), argv[2:]
    sets = [rest[i + 1] for i in range(len(rest) - 1) if rest[i] == "--set"]
    recipe = load(recipe_path, sets)
    recipe.data.train_limit = int(rest[rest.index("--labels") + 1]) if "--labels" in rest else None
    if "--untrained" in rest:
        torch.manual_seed(recipe.run.seed)
        m = recipe.model
        encoder = build_encoder(m.backbone, m.small_stem, m.width)
    else:
        encoder = load_backbone(str(run_dir))
    run_linear_eval(recipe, encoder, out_dir=run_dir / "linear")


# ------------------------------------------------------------------------------------------------ results


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def collect(out: Path, seeds: list[int]) -> dict[str, Any]:
    """{'linear': {method: {seed: metrics}}, 'transfer': {'method/reg': {seed: metrics}},
    'sweeps': {'method/reg': {seed: chosen settings}}} from whatever results exist under `out`."""
    out = Path(out)
    data: dict[str, Any] = {"linear": {}, "transfer": {}, "sweeps": {}}
    for m in [UNTRAINED, *METHODS]:
        for s in seeds:
            r = _read(pretrain_dir(out, m, s) / "linear" / "eval" / "results.json")
            if r:
                data["linear"].setdefault(m, {})[s] = r["metrics"]
    for m, reg in TRANSFER:
        for s in seeds:
            d = finetune_dir(out, m, s, reg)
            r = _read(d / "eval" / "results.json")
            if r:
                data["transfer"].setdefault(f"{m}/{reg}", {})[s] = r["metrics"]
            if (d / "sweep.json").is_file():
                data["sweeps"].setdefault(f"{m}/{reg}", {})[s] = best_settings(d / "sweep.json")
    return data


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    n = len(values)
    mu = sum(values) / n
    if n < 2:
        return mu, None
    return mu, math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1))


def _metric(m: dict[str, Any], name: str) -> float | None:
    paths = {"top1": ("clean", "top1"), "c_error": ("corruptions", "error"), "calib": ("calibration", "rms"),
             "robust": ("adversarial", "robust_top1"), "c_calib": ("corruptions", "rms_calibration")}
    a, b = paths[name]
    v = (m.get(a) or {}).get(b)
    return float(v) if isinstance(v, int | float) else None


def stat(per_seed: dict[Any, dict[str, Any]] | None, name: str) -> tuple[float, float | None, int] | None:
    vals = [v for m in (per_seed or {}).values() if (v := _metric(m, name)) is not None]
    if not vals:
        return None
    mu, sd = mean_std(vals)
    return mu, sd, len(vals)


def fmt(s: tuple[float, float | None, int] | None) -> str:
    if s is None:
        return "—"
    mu, sd, _n = s
    return f"{mu:.2f}" if sd is None else f"{mu:.2f} ± {sd:.2f}"


def _p(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


@dataclass
class Claim:
    table: str
    text: str
    a: tuple[float, float | None, int] | None
    b: tuple[float, float | None, int] | None
    higher: bool  # the paper says a > b (True) or a < b (False)

    def verdict(self) -> str:
        if self.a is None or self.b is None:
            return "not run"
        (ma, sa, na), (mb, sb, nb) = self.a, self.b
        if ma == mb:
            return "no difference"
        same = ma > mb if self.higher else ma < mb
        if sa is None or sb is None:
            return ("same direction" if same else "opposite direction") + " (1 seed, no error bar)"
        se = math.sqrt(sa**2 / na + sb**2 / nb)
        clear = abs(ma - mb) > 2 * se
        if same:
            return "reproduces" if clear else "same direction, within noise (|Δ| ≤ 2 SE)"
        return "does not reproduce (opposite, |Δ| > 2 SE)" if clear else "does not reproduce (opposite, within noise)"

    def row(self) -> list[str]:
        return [self.table, self.text, f"{fmt(self.a)} vs {fmt(self.b)}", self.verdict()]


def claims(data: dict[str, Any]) -> list[Claim]:
    lin, tr = data["linear"], data["transfer"]
    out = [
        Claim("1", "URRL top-1 > MoCo v2 top-1", stat(lin.get("urrl"), "top1"), stat(lin.get("moco_v2"), "top1"), True),
        Claim("1", "URRL corruption error < MoCo v2", stat(lin.get("urrl"), "c_error"),
              stat(lin.get("moco_v2"), "c_error"), False),
        Claim("1", "URRL RMS calibration < MoCo v2", stat(lin.get("urrl"), "calib"), stat(lin.get("moco_v2"), "calib"),
              False),
    ]
    for m in ("augmix", "augmix_allop", "augmix_moco"):
        out.append(Claim("1", f"URRL top-1 > {LABELS[m]} top-1", stat(lin.get("urrl"), "top1"),
                         stat(lin.get(m), "top1"), True))
        out.append(Claim("1", f"MoCo v2 top-1 > {LABELS[m]} top-1", stat(lin.get("moco_v2"), "top1"),
                         stat(lin.get(m), "top1"), True))
    for e in TRANSFER_ENCODERS:
        out.append(Claim("2", f"{LABELS[e]}-SR robust > {LABELS[e]} robust", stat(tr.get(f"{e}/sim"), "robust"),
                         stat(tr.get(f"{e}/none"), "robust"), True))
        out.append(Claim("2", f"{LABELS[e]}-SR clean < {LABELS[e]} clean (SR costs accuracy)",
                         stat(tr.get(f"{e}/sim"), "top1"), stat(tr.get(f"{e}/none"), "top1"), False))
    out += [
        Claim("2", "URRL robust > MoCo v2 robust (no regularizer)", stat(tr.get("urrl/none"), "robust"),
              stat(tr.get("moco_v2/none"), "robust"), True),
        Claim("2", "URRL-SR robust > MoCo v2-SR robust", stat(tr.get("urrl/sim"), "robust"),
              stat(tr.get("moco_v2/sim"), "robust"), True),
        Claim("2", "URRL-L2SP robust > URRL robust", stat(tr.get("urrl/l2sp"), "robust"),
              stat(tr.get("urrl/none"), "robust"), True),
        Claim("2", "URRL + adversarial training robust > URRL-SR robust", stat(tr.get("urrl/adversarial"), "robust"),
              stat(tr.get("urrl/sim"), "robust"), True),
    ]
    for e in TRANSFER_ENCODERS:
        out.append(Claim("3", f"{LABELS[e]}-SR RMS calib. on -C < {LABELS[e]}", stat(tr.get(f"{e}/sim"), "c_calib"),
                         stat(tr.get(f"{e}/none"), "c_calib"), False))
    out.append(Claim("3", "URRL-SR RMS calib. on -C < MoCo v2-SR", stat(tr.get("urrl/sim"), "c_calib"),
                     stat(tr.get("moco_v2/sim"), "c_calib"), False))
    return out


def tables(data: dict[str, Any]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The three tables in the paper's layout, replica (mean ± std over seeds) next to the paper's numbers."""
    lin, tr = data["linear"], data["transfer"]
    t1 = []
    for m in [UNTRAINED, *METHODS]:
        p = PAPER_T1.get(m, (None, None, None))
        n = len(lin.get(m, {}))
        if m == UNTRAINED and not n:
            continue
        t1.append([LABELS[m], str(n), fmt(stat(lin.get(m), "top1")), fmt(stat(lin.get(m), "c_error")),
                   fmt(stat(lin.get(m), "calib")), _p(p[0]), _p(p[1]), _p(p[2])])
    h1 = ["method", "seeds", "top-1 (%)", "Tiny-ImageNet-C error (%)", "RMS calib. (%)",
          "paper top-1", "paper ImageNet-C mCE", "paper RMS calib."]
    t2, t3 = [], []
    for e, reg in TRANSFER:
        key = f"{e}/{reg}"
        label = LABELS[e] + REG_LABELS[reg]
        paper = PAPER_T2.get(("adversarial", "") if reg == "adversarial" else (e, reg))
        t2.append([label, str(len(tr.get(key, {}))), fmt(stat(tr.get(key), "robust")),
                   fmt(stat(tr.get(key), "top1")),
                   _p(paper[0] if paper else None), _p(paper[1] if paper else None)])
        if (e, reg) in PAPER_T3:
            t3.append([label, str(len(tr.get(key, {}))), fmt(stat(tr.get(key), "c_calib")),
                       fmt(stat(tr.get(key), "calib")), _p(PAPER_T3[(e, reg)])])
    h2 = ["method", "seeds", "CIFAR-10 robust top-1 (%)", "CIFAR-10 clean top-1 (%)",
          "paper robust (12-set avg.)", "paper clean (12-set avg.)"]
    h3 = ["method", "seeds", "RMS calib. on CIFAR-10-C (%)", "RMS calib. clean (%)", "paper CIFAR-10-C"]
    return {"table1": (h1, t1), "table2": (h2, t2), "table3": (h3, t3)}


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def describe_budget(budget: str) -> list[str]:
    """The protocol as the recipes (plus the budget's overrides) define it, one Markdown bullet per stage."""
    b = BUDGETS[budget]
    pre = load(RECIPES / "urrl.toml", b["pretrain"])
    ft = load(RECIPES / "cifar10_sim.toml", b["finetune"])
    adv = load(RECIPES / "cifar10_adversarial.toml", b["finetune"]).finetune.regularizer
    m, d, o, q = pre.model, pre.data, pre.optim, pre.pretext
    images = f"{d.train_limit:,}" if d.train_limit else "all"
    sweeps = "; ".join(f"{k} ∈ {v}" for r in ("sim", "l2sp")
                       for k, v in load(RECIPES / f"cifar10_{r}.toml").finetune.sweep.items())
    return [
        f"- Pretraining (Table 1): {m.backbone} width {m.width}, {'3×3 stem' if m.small_stem else '7×7 stem'}, "
        f"{d.image_size} px, {images} Tiny-ImageNet training images (unlabelled), {o.epochs} epochs, batch "
        f"{d.batch_size}, SGD lr {o.lr} cosine, MoCo v2 K = {q.queue_size}, m = {q.momentum}, τ = {q.temperature}, "
        f"BN over {q.bn_groups} groups; every method the same except its augmentation family.",
        f"- Linear evaluation: frozen features of all labelled training images, {pre.linear_eval.epochs} epochs, "
        f"lr {pre.linear_eval.lr} ({pre.linear_eval.schedule}); top-1 and RMS calibration on the 10,000 val images; "
        f"corruption error on Tiny-ImageNet-C generated from val ({pre.eval.corruptions.limit} images per "
        "corruption and severity, 15 × 5).",
        f"- Transfer (Tables 2–3): CIFAR-10, {ft.data.train_limit or 'all':,} labelled training images "
        f"({ft.finetune.val_fraction:.0%} held out for the first seed's sweep only; every final model trains on all "
        f"of them), {ft.finetune.epochs} epochs, lr {ft.finetune.lr} cosine, batch {ft.finetune.batch_size}; "
        f"regularizer strength chosen by validation {ft.finetune.select} top-1 in the first seed's sweep "
        f"({sweeps}), later seeds reusing its choice; adversarial training with L2-PGD ε = {adv.eps}, "
        f"{adv.steps} steps, from the URRL encoder. Clean top-1 and RMS calibration on all 10,000 test images; L2-PGD "
        f"(ε = {ft.eval.adversarial.eps}, {ft.eval.adversarial.steps} steps) on {ft.eval.adversarial.limit} test "
        f"images; CIFAR-10-C generated from test ({ft.eval.corruptions.limit} per corruption and severity).",
        "- Differences from the paper's protocol, all for the CPU budget: a ResNet-10 at width 16 instead of a "
        "ResNet-50, minutes instead of 200 epochs, Tiny-ImageNet at 32 px instead of ImageNet at 224 px, a mean "
        "corruption error instead of an AlexNet-normalised mCE, one transfer data set (CIFAR-10) instead of 12, and "
        "adversarial training with a 3-step attack. The numbers test the direction of each claim at this scale, "
        "not its size.",
    ]


def _final(step: Step) -> str:
    try:
        return _shell(step.command())
    except UrrlError:
        return step.shown()


def machine_meta(steps: list[Step], seeds: list[int], budget: str, timings: dict[str, float]) -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "machine": platform.machine(), "cpu_cores": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "budget": budget,
            "seeds": seeds, "commands": [_final(s) for s in steps], "timings": timings,
            "minutes": round(sum(timings.values()) / 60, 1)}


def _plots(data: dict[str, Any], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = []
    lin, tr = data["linear"], data["transfer"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (name, title) in zip(axes, [("top1", "top-1 (%)"), ("c_error", "Tiny-ImageNet-C error (%)"),
                                        ("calib", "RMS calibration (%)")], strict=True):
        ss = [stat(lin.get(m), name) for m in METHODS]
        ax.bar(range(len(METHODS)), [s[0] if s else 0 for s in ss],
               yerr=[(s[1] or 0) if s else 0 for s in ss], capsize=3)
        ax.set_xticks(range(len(METHODS)), [LABELS[m] for m in METHODS], rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.suptitle("Replica Table 1: linear evaluation on Tiny-ImageNet (mean ± std over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(folder / "replica_table1.png", dpi=110)
    plt.close(fig)
    saved.append("replica_table1.png")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for e, reg in TRANSFER:
        key = f"{e}/{reg}"
        r, c, k = stat(tr.get(key), "robust"), stat(tr.get(key), "top1"), stat(tr.get(key), "c_calib")
        label = LABELS[e] + REG_LABELS[reg]
        if r and c:
            axes[0].errorbar(c[0], r[0], xerr=c[1] or 0, yerr=r[1] or 0, fmt="o", capsize=3, label=label)
        if k:
            axes[1].barh(label, k[0], xerr=k[1] or 0, capsize=3)
    axes[0].set_xlabel("clean top-1 (%)")
    axes[0].set_ylabel("L2-PGD robust top-1 (%)")
    axes[0].set_title("Table 2 analogue (CIFAR-10)", fontsize=9)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)
    axes[1].set_xlabel("RMS calibration on CIFAR-10-C (%)")
    axes[1].set_title("Table 3 analogue", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "replica_tables23.png", dpi=110)
    plt.close(fig)
    saved.append("replica_tables23.png")
    return saved


def write_report(data: dict[str, Any], path: Path, meta: dict[str, Any] | None = None, plots: bool = True) -> str:
    """Write docs/replica.md (tables, claims, commands, machine) and the plots next to it; return the Markdown."""
    meta = meta or {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = tables(data)
    cl = claims(data)
    md = [
        "# CPU-scale replica of the URRL paper's Tables 1–3",
        "",
        "Generated by `urrl replica` (urrlkit/experiments/replica.py) from the results JSONs; do not edit by hand. "
        "Replica numbers are mean ± sample standard deviation over seeds; the paper's are ImageNet-scale (ResNet-50, "
        "200 epochs) and are listed for the direction of each effect, not for the values.",
        "",
        f"Budget: `{meta.get('budget', '?')}`; seeds {meta.get('seeds', '?')}; wall time of the steps run: "
        f"{meta.get('minutes', '?')} minutes; machine: {meta.get('platform', '?')}, {meta.get('cpu_cores', '?')} "
        f"CPU cores, torch {meta.get('torch', '?')} ({meta.get('torch_threads', '?')} threads).",
        "",
        *([*describe_budget(meta["budget"]), ""] if meta.get("budget") in BUDGETS else []),
        "## Table 1 analogue: linear evaluation (Tiny-ImageNet-200 val, 32 px)",
        "",
        "Corruption error is the mean top-1 error on Tiny-ImageNet-C generated from val (no AlexNet reference, so "
        "not an mCE); RMS calibration is on clean val.",
        "",
        _md(*t["table1"]),
        "",
        "## Table 2 analogue: transfer to CIFAR-10 (L2-PGD ε = 0.5, 20 steps)",
        "",
        "The paper's columns average 12 data sets; its adversarial-training row is one reference for both encoders.",
        "",
        _md(*t["table2"]),
        "",
        "## Table 3 analogue: RMS calibration error on CIFAR-10-C (generated)",
        "",
        _md(*t["table3"]),
        "",
    ]
    if data.get("sweeps"):
        md += ["Regularizer strength chosen on the validation split (10% of the fine-tuning images; never test):", ""]
        for key, per in sorted(data["sweeps"].items()):
            md.append(f"- {key}: " + ", ".join(f"seed {s}: {v}" for s, v in sorted(per.items())))
        later = [s for s in meta.get("seeds", [])[1:]]
        if later:
            md.append(f"- seeds {', '.join(map(str, later))} reuse the first seed's choice (no sweep)")
        md.append("")
    md += [
        "## Which of the paper's claims reproduce at this scale",
        "",
        "Computed from the numbers above: \"reproduces\" means the difference has the paper's sign and exceeds "
        "twice its standard error over seeds (√(s₁²/n₁ + s₂²/n₂)).",
        "",
        _md(["table", "claim (paper's direction)", "replica (a vs b)", "verdict"], [c.row() for c in cl]),
        "",
    ]
    if plots and (data["linear"] or data["transfer"]):
        names = _plots(data, path.parent)
        md += ["## Plots", "", *[f"![{n}]({n})" for n in names], ""]
    if meta.get("commands"):
        md += ["## Commands", "", "```", *meta["commands"], "```", ""]
    if meta.get("timings"):
        md += ["## Wall time per step (s)", "", _md(["step", "seconds"],
                                                    [[k, f"{v:.0f}"] for k, v in meta["timings"].items()]), ""]
    text = "\n".join(md)
    path.write_text(text)
    return text


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "linear-eval":
        linear_eval_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m urrlkit.experiments.replica linear-eval RECIPE RUN_DIR [--set K=V ...]")
