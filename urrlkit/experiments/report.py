"""`urrl report`: assemble the results.json of several runs into the paper's table layouts.

Table 1 (ImageNet linear evaluation): top-1 / ImageNet-C mCE / RMS calibration error.
Table 2 (transfer): PGD-L2 robust and clean top-1 per data set, with the average over data sets.
Table 3: RMS calibration error on the -C benchmarks.
Rows are methods: a run's label is its directory name with the data set name removed (so `urrl-sr-cifar10`
and `urrl-sr-cifar100` form one row `urrl-sr`). Written as Markdown (report.md) and CSV (table1/2/3.csv).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from rich.console import Console

from urrlkit.errors import UrrlError

CANDIDATES = ("results.json", "eval/results.json", "model/eval/results.json")


def find_results(path: Path) -> Path:
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return path
    for c in CANDIDATES:
        if (path / c).is_file():
            return path / c
    raise UrrlError(f"{path}: no eval results (looked for {', '.join(CANDIDATES)}); run `urrl eval` first")


def load_results(path: Path) -> dict[str, Any]:
    f = find_results(path)
    try:
        data = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise UrrlError(f"{f}: malformed JSON ({exc})") from None
    if not isinstance(data, dict) or "metrics" not in data:
        raise UrrlError(f"{f}: not a urrlkit results file (no 'metrics')")
    return data


def run_label(path: Path, dataset: str) -> str:
    p = Path(path)
    if p.is_file():
        p = p.parent
    if p.name == "eval":
        p = p.parent
    if p.name == "model":
        p = p.parent
    name = p.resolve().name
    parts = [t for t in re.split(r"[-_]", name) if t and t != dataset]
    return "-".join(parts) or name


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _mean(vs: list[float]) -> float | None:
    return sum(vs) / len(vs) if vs else None


def build_tables(runs: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{table name: (header, rows)} from (label, results) pairs."""
    t1_rows: list[list[str]] = []
    t2: dict[str, dict[str, tuple[float, float]]] = {}  # label -> data set -> (robust, clean) top-1
    t3: dict[str, dict[str, float]] = {}  # label -> corruption benchmark -> RMS calibration error
    datasets: list[str] = []
    benches: list[str] = []
    for label, r in runs:
        m = r["metrics"]
        ds = r.get("dataset", "?")
        corr = m.get("corruptions") or {}
        if "clean" in m or corr.get("benchmark") == "imagenet-c":
            calib = (
                corr.get("rms_calibration")
                if corr.get("benchmark") == "imagenet-c"
                else (m.get("calibration") or {}).get("rms")
            )
            t1_rows.append(
                [label, ds, _fmt((m.get("clean") or {}).get("top1")), _fmt(corr.get("mce")), _fmt(calib)]
            )
        if "adversarial" in m:
            a = m["adversarial"]
            t2.setdefault(label, {})[ds] = (
                a["robust_top1"],
                (m.get("clean") or {}).get("top1", a["clean_top1"]),
            )
            if ds not in datasets:
                datasets.append(ds)
        if corr and corr.get("benchmark") != "imagenet-c":
            b = corr["benchmark"] if corr["benchmark"] != "generated" else f"{ds}-c (generated)"
            t3.setdefault(label, {})[b] = corr["rms_calibration"]
            if b not in benches:
                benches.append(b)
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    tables["table1"] = (
        ["method", "data set", "top-1 (%)", "ImageNet-C mCE (%)", "RMS calibration (%)"],
        t1_rows,
    )
    head2 = (
        ["method"]
        + [f"{d} robust" for d in datasets]
        + ["average robust"]
        + [f"{d} clean" for d in datasets]
        + ["average clean"]
    )
    rows2 = []
    for label, per in t2.items():
        rob = [per[d][0] if d in per else None for d in datasets]
        cln = [per[d][1] if d in per else None for d in datasets]
        rows2.append(
            [
                label,
                *map(_fmt, rob),
                _fmt(_mean([v for v in rob if v is not None])),
                *map(_fmt, cln),
                _fmt(_mean([v for v in cln if v is not None])),
            ]
        )
    tables["table2"] = (head2, rows2)
    rows3 = [[label, *[_fmt(per.get(b)) for b in benches]] for label, per in t3.items()]
    tables["table3"] = (["method", *[f"{b} RMS calibration (%)" for b in benches]], rows3)
    return tables


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


TITLES = {
    "table1": "Table 1: top-1 / ImageNet-C mCE / RMS calibration error "
    "(on ImageNet-C when evaluated, else clean)",
    "table2": "Table 2: PGD-L2 robust and clean top-1 per data set (%), with the average",
    "table3": "Table 3: RMS calibration error on -C (%), mean over corruptions × severities",
}


def run_report(runs: list[Path], out: Path, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(highlight=False)
    if not runs:
        raise UrrlError("report: give at least one run directory")
    loaded = []
    for p in runs:
        r = load_results(p)
        loaded.append((run_label(p, r.get("dataset", "")), r))
    tables = build_tables(loaded)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UrrlError(f"{out}: cannot create report folder ({exc.strerror})") from None
    md = ["# urrlkit report", ""]
    for key, (header, rows) in tables.items():
        with open(out / f"{key}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
        md += [
            f"## {TITLES[key]}",
            "",
            markdown(header, rows) if rows else "_no runs with these metrics_",
            "",
        ]
    sources = [
        f"- {label}: model {r.get('model', '?')}, recipe {r.get('recipe_hash')}, data {r.get('dataset')}"
        for label, r in loaded
    ]
    md += ["## Sources", "", *sources, ""]
    (out / "report.md").write_text("\n".join(md))
    console.print("\n".join(md), markup=False)
    console.print(f"wrote {out / 'report.md'} and table1/2/3.csv", markup=False)
    return {"tables": tables, "out": str(out)}
