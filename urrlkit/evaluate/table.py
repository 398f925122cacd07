"""Tables of evaluation results: the one Markdown table writer (`urrl report`, `urrl replica`) and the Rich
table `urrl eval` prints, both from the typed results."""

from __future__ import annotations

import numpy as np
from rich.table import Table

from urrlkit.results import EvalResults


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (cells as given; no escaping)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def results_table(results: EvalResults) -> Table:
    """`urrl eval`'s summary: one row per metric, its value and the settings it was measured with."""
    m = results.metrics
    t = Table(title=f"urrl eval — {results.model or results.dataset}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("settings")
    if (cl := m.clean) is not None:
        t.add_row("clean top-1 (%)", f"{cl.top1:.2f}", f"n={cl.n}")
    if (c := m.calibration) is not None:
        t.add_row("RMS calibration error (%)", f"{c.rms:.2f}", f"bins of {c.bin_size}, n={c.n}")
        t.add_row("RMS calib. error, legacy (%)", f"{c.rms_legacy:.2f}", "reference code: last bin skipped")
        t.add_row("ECE (%)", f"{c.ece:.2f}", "15 equal-width bins")
    if (a := m.adversarial) is not None:
        t.add_row(
            "robust top-1 (%)",
            f"{a.robust_top1:.2f}",
            f"PGD-L2 eps={a.eps} steps={a.steps} step={a.step_size:.4g} "
            f"random_start={a.random_start} use_best={a.use_best} n={a.n}",
        )
        t.add_row("clean top-1 on attack subset (%)", f"{a.clean_top1:.2f}", f"n={a.n}")
    if (aa := m.autoattack) is not None:
        t.add_row("AutoAttack robust top-1 (%)", f"{aa.robust_top1:.2f}",
                  f"AutoAttack-{aa.norm} ({aa.version}) eps={aa.eps} n={aa.n}")
        t.add_row("clean top-1 on AutoAttack subset (%)", f"{aa.clean_top1:.2f}", f"n={aa.n}")
    if (co := m.corruptions) is not None:
        t.add_row(
            f"{co.benchmark} mean error (%)",
            f"{co.error:.2f}",
            f"{len(co.corruptions or [])} corruptions × severities {co.severities}",
        )
        if co.mce is not None:
            t.add_row("mCE (%)", f"{co.mce:.2f}", "normalised by AlexNet")
        t.add_row(f"{co.benchmark} RMS calibration (%)", f"{co.rms_calibration:.2f}",
                  "mean over corruption × severity")
        for name, v in (co.per_corruption or {}).items():
            errs = " ".join(f"{e:.1f}" for e in v.errors or [])
            ce = f"  CE {v.ce:.1f}" if v.ce is not None else ""
            t.add_row(f"  {name}", f"{np.mean(v.errors or [np.nan]):.2f}", f"per severity: {errs}{ce}")
    return t


__all__ = ["markdown_table", "results_table"]
