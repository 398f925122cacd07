"""PNG plots of an evaluation (matplotlib, Agg backend): error vs severity per corruption and a reliability
diagram."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from urrlkit.engine.statefile import atomic_write_bytes
from urrlkit.results import EvalResults


def _save(fig: Any, path: Path) -> None:
    """Render to memory, then write atomically: a full disk leaves no truncated PNG (one line naming it)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_plots(results: EvalResults, out_dir: Path) -> list[str]:
    """corruption_errors.png and reliability.png for the suites that ran; the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved: list[str] = []
    m = results.metrics
    if (c := m.corruptions) is not None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for name, v in (c.per_corruption or {}).items():
            ax.plot(c.severities or [], v.errors or [], marker="o", label=name)
        ax.set_xlabel("severity")
        ax.set_ylabel("top-1 error (%)")
        ax.set_xticks(c.severities or [])
        ax.set_title(f"{c.benchmark}: error vs severity (mean {c.error:.1f} %)")
        ax.legend(fontsize=7, ncol=2, loc="upper left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        _save(fig, out_dir / "corruption_errors.png")
        saved.append("corruption_errors.png")
    if (cal := m.calibration) is not None and cal.reliability is not None:
        rel = cal.reliability
        edges = rel["edges"]
        width = edges[1] - edges[0]
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        acc = [a if a == a else 0.0 for a in rel["accuracy"]]  # NaN (empty bin) → 0
        ax.bar(edges[:-1], acc, width=width, align="edge", edgecolor="k", alpha=0.7, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"reliability (ECE {cal.ece:.1f} %, RMS {cal.rms:.1f} %)")
        ax.legend(loc="upper left")
        fig.tight_layout()
        _save(fig, out_dir / "reliability.png")
        saved.append("reliability.png")
    return saved
