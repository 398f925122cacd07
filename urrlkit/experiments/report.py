"""`urrl report`: assemble the results.json of several runs into the paper's table layouts.

Table 1 (ImageNet linear evaluation): top-1 / ImageNet-C mCE / RMS calibration error.
Table 2 (transfer): PGD-L2 robust and clean top-1 per data set, with the average over data sets.
Table 3: RMS calibration error on the -C benchmarks.
Table 4 (when a run has it): AutoAttack robust and clean top-1 per data set, beside PGD.
Rows are methods: a run's label is its directory name with the data set name removed (so `urrl-sr-cifar10`
and `urrl-sr-cifar100` form one row `urrl-sr`). Written as Markdown (report.md) and CSV (table1/2/3.csv).
A RobustBench model-info JSON (model_info/<dataset>/<threat>/<model>.json, or `urrl eval --robustbench-json`)
is read as a run too, labelled with its file name: clean top-1, AutoAttack robust top-1, corruption mCE.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from rich.console import Console

from urrlkit.engine.statefile import atomic_write_bytes
from urrlkit.engine.untrusted import read_json
from urrlkit.engine.writable import check_writable_dir
from urrlkit.errors import UrrlError
from urrlkit.evaluate.robustbench import from_robustbench, is_robustbench
from urrlkit.evaluate.table import markdown_table
from urrlkit.results import EvalResults

CANDIDATES = ("results.json", "eval/results.json", "model/eval/results.json")


def find_results(path: Path) -> Path:
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return path
    for c in CANDIDATES:
        if (path / c).is_file():
            return path / c
    raise UrrlError(f"{path}: no eval results (looked for {', '.join(CANDIDATES)}); run `urrl eval` first")


def load_results(path: Path) -> EvalResults:
    """A run's results.json — or a RobustBench model-info file — as typed results."""
    f = find_results(path)
    data = read_json(f, "eval results", error=UrrlError)
    if is_robustbench(data):
        threat = f.parent.name if f.parent.name in ("L2", "Linf", "corruptions") else None
        return from_robustbench(data, str(f), threat)
    return EvalResults.from_dict(data, str(f))


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


def build_tables(runs: list[tuple[str, EvalResults]]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """{table name: (header, rows)} from (label, results) pairs; table4 only when a run has AutoAttack."""
    t1_rows: list[list[str]] = []
    t2: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    t3: dict[str, dict[str, float | None]] = {}
    t4: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    datasets: list[str] = []
    benches: list[str] = []
    aa_sets: list[str] = []
    for label, r in runs:
        m = r.metrics
        ds = r.dataset or "?"
        corr = m.corruptions
        clean = m.clean.top1 if m.clean is not None else None
        imagenet_c = corr is not None and corr.benchmark == "imagenet-c"
        if m.clean is not None or imagenet_c:
            calib = corr.rms_calibration if corr is not None and imagenet_c else (
                m.calibration.rms if m.calibration is not None else None)
            t1_rows.append([label, ds, _fmt(clean), _fmt(corr.mce if corr is not None else None), _fmt(calib)])
        if (a := m.adversarial) is not None:
            t2.setdefault(label, {})[ds] = (a.robust_top1, clean if clean is not None else a.clean_top1)
            if ds not in datasets:
                datasets.append(ds)
        if (aa := m.autoattack) is not None:
            t4.setdefault(label, {})[ds] = (aa.robust_top1, clean if clean is not None else aa.clean_top1)
            if ds not in aa_sets:
                aa_sets.append(ds)
        if corr is not None and not imagenet_c and corr.rms_calibration is not None:
            b = corr.benchmark if corr.benchmark != "generated" else f"{ds}-c (generated)"
            t3.setdefault(label, {})[str(b)] = corr.rms_calibration
            if b not in benches:
                benches.append(str(b))
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    tables["table1"] = (
        ["method", "data set", "top-1 (%)", "ImageNet-C mCE (%)", "RMS calibration (%)"],
        t1_rows,
    )
    tables["table2"] = _per_dataset(t2, datasets)
    rows3 = [[label, *[_fmt(per.get(b)) for b in benches]] for label, per in t3.items()]
    tables["table3"] = (["method", *[f"{b} RMS calibration (%)" for b in benches]], rows3)
    if t4:
        tables["table4"] = _per_dataset(t4, aa_sets)
    return tables


def _per_dataset(per_label: dict[str, dict[str, tuple[float | None, float | None]]],
                 datasets: list[str]) -> tuple[list[str], list[list[str]]]:
    """(robust, clean) per data set → robust columns, their average, clean columns, their average."""
    head = (["method"] + [f"{d} robust" for d in datasets] + ["average robust"]
            + [f"{d} clean" for d in datasets] + ["average clean"])
    rows = []
    for label, per in per_label.items():
        rob = [per[d][0] if d in per else None for d in datasets]
        cln = [per[d][1] if d in per else None for d in datasets]
        rows.append([label, *map(_fmt, rob), _fmt(_mean([v for v in rob if v is not None])),
                     *map(_fmt, cln), _fmt(_mean([v for v in cln if v is not None]))])
    return head, rows


TITLES = {
    "table1": "Table 1: top-1 / ImageNet-C mCE / RMS calibration error "
    "(on ImageNet-C when evaluated, else clean)",
    "table2": "Table 2: PGD-L2 robust and clean top-1 per data set (%), with the average",
    "table3": "Table 3: RMS calibration error on -C (%), mean over corruptions × severities",
    "table4": "Table 4: AutoAttack robust and clean top-1 per data set (%), with the average",
}


def run_report(runs: list[Path], out: Path, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(highlight=False)
    if not runs:
        raise UrrlError("report: give at least one run directory")
    out = Path(out)
    check_writable_dir(out, "--out")  # a read-only folder is refused before any run is read
    loaded, files = [], []
    for p in runs:
        r = load_results(p)
        f = find_results(p)
        # A RobustBench model-info file (no recipe) is named by its model id, the file's name. Runs of one label
        # (one method on several data sets) share a row.
        label = f.stem if r.recipe_hash is None and f.name != "results.json" else run_label(p, r.dataset or "")
        loaded.append((label, r))
        files.append(f)
    tables = build_tables(loaded)
    md = ["# urrlkit report", ""]
    for key, (header, rows) in tables.items():
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows(rows)
        # atomic: a full disk leaves the previous table (or none), never half of one, and says so in one line
        atomic_write_bytes(out / f"{key}.csv", buf.getvalue().encode())
        md += [
            f"## {TITLES[key]}",
            "",
            markdown_table(header, rows) if rows else "_no runs with these metrics_",
            "",
        ]
    sources = [
        f"- {label}: model {r.model or '?'}, recipe {r.recipe_hash}, data {r.dataset}" if r.recipe_hash is not None
        else f"- {label}: RobustBench model-info claim {f}, data {r.dataset}"
        for (label, r), f in zip(loaded, files, strict=True)
    ]
    md += ["## Sources", "", *sources, ""]
    atomic_write_bytes(out / "report.md", "\n".join(md).encode())
    console.print("\n".join(md), markup=False)
    csvs = "table" + "/".join(k.removeprefix("table") for k in tables) + ".csv"
    console.print(f"wrote {out / 'report.md'} and {csvs}", markup=False)
    return {"tables": tables, "out": str(out)}
