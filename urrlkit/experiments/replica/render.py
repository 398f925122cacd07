"""The replica's report: the paper's Tables 1–3 with the replica's numbers beside the paper's, the protocol as
the recipes define it, the claims' verdicts, plots, commands and timings (docs/replica.md)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from urrlkit.backbones.resnet import ResNet
from urrlkit.config import AdvReg, load
from urrlkit.errors import UrrlError
from urrlkit.evaluate.table import markdown_table
from urrlkit.experiments.replica.plan import (
    BUDGETS,
    LABELS,
    METHODS,
    RECIPES,
    TRANSFER,
    UNTRAINED,
    Step,
    _shell,
)
from urrlkit.experiments.replica.results import claims, fmt, stat
from urrlkit.pretext.methods.moco_v2 import MoCoV2

# The paper's numbers (Tables 1–3).
PAPER_T1 = {"moco_v2": (67.59, 88.21, 15.30), "augmix": (61.45, 94.47, 16.17),
            "augmix_allop": (61.97, 92.34, 15.44), "augmix_moco": (64.41, 90.18, 15.31),
            "urrl": (68.47, 84.41, 14.64)}  # top-1, ImageNet-C mCE, RMS calibration
PAPER_T2 = {("moco_v2", "none"): (25.11, 81.68), ("urrl", "none"): (25.37, 81.77), ("urrl", "l2sp"): (28.08, 82.37),
            ("moco_v2", "sim"): (36.29, 77.85), ("urrl", "sim"): (36.72, 78.38),
            ("adversarial", ""): (46.25, 54.53)}  # robust, clean (12-dataset average)
PAPER_T3 = {("moco_v2", "none"): 16.96, ("urrl", "none"): 17.90, ("moco_v2", "sim"): 9.92, ("urrl", "sim"): 8.95}
REG_LABELS = {"none": "", "l2sp": "-L2SP", "sim": "-SR", "adversarial": " + adversarial training"}


def _p(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


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


_md = markdown_table  # the one Markdown table writer (urrlkit/evaluate/table.py), shared with `urrl report`


def describe_budget(budget: str) -> list[str]:
    """The protocol as the recipes (plus the budget's overrides) define it, one Markdown bullet per stage."""
    b = BUDGETS[budget]
    pre = load(RECIPES / "urrl.toml", b["pretrain"])
    ft = load(RECIPES / "cifar10_sim.toml", b["finetune"])
    adv = load(RECIPES / "cifar10_adversarial.toml", b["finetune"]).finetune.regularizer
    if not isinstance(adv, AdvReg):
        raise UrrlError(f"{RECIPES / 'cifar10_adversarial.toml'}: finetune.regularizer.type must be 'adversarial'")
    m, d, o, q = pre.model, pre.data, pre.optim, pre.pretext
    if not isinstance(m, ResNet) or not isinstance(q, MoCoV2):
        raise UrrlError(f"{RECIPES / 'urrl.toml'}: the replica describes a MoCo v2 ResNet; got {q.method} on "
                        f"{m.backbone}")
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
        "Generated by `urrl replica` (urrlkit/experiments/replica/) from the results JSONs; do not edit by hand. "
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
