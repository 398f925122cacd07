"""`urrl replica`: the CPU-scale replica of the paper's Tables 1–3 (issue #8) in one command.

Table 1 analogue: pretrain every method of recipes/replica/{moco_v2,augmix,augmix_allop,augmix_moco,urrl}.toml on
Tiny-ImageNet, linear-evaluate on its labels (top-1, generated Tiny-ImageNet-C error, RMS calibration).
Tables 2–3 analogue: fine-tune the MoCo v2 and URRL encoders on CIFAR-10 with none / L2-SP / SR (α, λ chosen on a
validation split) / adversarial training; clean top-1, L2-PGD robust top-1, RMS calibration on CIFAR-10-C.
Every step runs the `urrl` CLI in a subprocess, skips what is finished (resumable), and the report
(docs/replica.md + plots) is rebuilt from the results JSONs, with mean ± sample std over seeds.

Modules: plan (methods, budgets, the steps), run (running them; the linear-eval step), results (collecting
the metrics, mean ± std, the paper's claims), render (tables, protocol, plots: docs/replica.md).
"""

from urrlkit.experiments.replica.plan import (
    BUDGETS,
    LABELS,
    METHODS,
    RECIPES,
    ROOT,
    TRANSFER,
    TRANSFER_ENCODERS,
    UNTRAINED,
    Step,
    best_settings,
    finetune_dir,
    plan,
    pretrain_dir,
)
from urrlkit.experiments.replica.render import (
    PAPER_T1,
    PAPER_T2,
    PAPER_T3,
    REG_LABELS,
    describe_budget,
    machine_meta,
    tables,
    write_report,
)
from urrlkit.experiments.replica.results import Claim, claims, collect, fmt, mean_std, stat
from urrlkit.experiments.replica.run import linear_eval_main, run_replica

__all__ = [
    "BUDGETS", "LABELS", "METHODS", "PAPER_T1", "PAPER_T2", "PAPER_T3", "RECIPES", "REG_LABELS", "ROOT", "TRANSFER",
    "TRANSFER_ENCODERS", "UNTRAINED", "Claim", "Step", "best_settings", "claims", "collect", "describe_budget",
    "finetune_dir", "fmt", "linear_eval_main", "machine_meta", "mean_std", "plan", "pretrain_dir", "run_replica",
    "stat", "tables", "write_report",
]
