"""`urrl report`: the paper's table layouts from results files."""

import csv
import json

import pytest

from urrlkit.errors import UrrlError
from urrlkit.experiments.report import build_tables, run_label, run_report


def _write(d, dataset, robust, clean, bench=None, rms=None, mce=None):
    m = {
        "clean": {"top1": clean, "n": 10},
        "calibration": {"rms": 5.0, "rms_legacy": 4.0, "ece": 3.0, "bin_size": 100, "n": 10},
        "adversarial": {
            "robust_top1": robust,
            "clean_top1": clean,
            "eps": 0.5,
            "steps": 20,
            "step_size": 0.0625,
            "random_start": False,
            "use_best": True,
            "n": 10,
        },
    }
    if bench:
        m["corruptions"] = {
            "benchmark": bench,
            "error": 30.0,
            "mce": mce,
            "rms_calibration": rms,
            "per_corruption": {},
        }
    (d / "eval").mkdir(parents=True)
    (d / "eval" / "results.json").write_text(
        json.dumps({"model": str(d), "recipe_hash": "abc", "dataset": dataset, "metrics": m})
    )
    return d


def test_tables(tmp_path):
    runs = [
        _write(tmp_path / "urrl-sr-cifar10", "cifar10", 30.0, 80.0, "cifar10-c", 9.0),
        _write(tmp_path / "urrl-sr-cifar100", "cifar100", 20.0, 60.0, "cifar100-c", 11.0),
        _write(tmp_path / "moco-cifar10", "cifar10", 10.0, 90.0),
        _write(tmp_path / "urrl-imagenet", "imagenet", 0.0, 68.47, "imagenet-c", 14.64, 84.41),
    ]
    assert run_label(runs[0], "cifar10") == "urrl-sr"
    out = run_report(runs, tmp_path / "rep")
    t2 = out["tables"]["table2"]
    assert t2[0][:3] == ["method", "cifar10 robust", "cifar100 robust"]
    row = next(r for r in t2[1] if r[0] == "urrl-sr")
    assert row[1:4] == ["30.00", "20.00", "—"] and row[4] == "25.00"  # average over the data sets it has
    t1 = {r[0]: r for r in out["tables"]["table1"][1]}
    assert t1["urrl"][2:] == ["68.47", "84.41", "14.64"]
    t3 = out["tables"]["table3"]
    assert t3[0] == ["method", "cifar10-c RMS calibration (%)", "cifar100-c RMS calibration (%)"]
    assert t3[1][0] == ["urrl-sr", "9.00", "11.00"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Table 2" in md and "| urrl-sr |" in md
    with open(tmp_path / "rep" / "table2.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "method" and len(rows) == 1 + len(t2[1])
    assert build_tables([])["table1"][1] == []


def test_missing_results(tmp_path):
    with pytest.raises(UrrlError, match="no eval results"):
        run_report([tmp_path], tmp_path / "rep")
