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


def test_report_reads_old_results_autoattack_and_robustbench(tmp_path):
    """Old-format results.json, a run with AutoAttack beside PGD, and a RobustBench model-info file (as RobustBench
    stores it, and as `urrl eval --robustbench-json` writes it) in one report."""
    old = _write(tmp_path / "moco-cifar10", "cifar10", 10.0, 90.0)  # the pre-typed layout, no autoattack
    aa = _write(tmp_path / "urrl-cifar10", "cifar10", 30.0, 80.0)
    data = json.loads((aa / "eval" / "results.json").read_text())
    data["metrics"]["autoattack"] = {"robust_top1": 22.5, "clean_top1": 80.0, "eps": 0.5, "norm": "L2",
                                     "version": "standard", "n": 10}
    (aa / "eval" / "results.json").write_text(json.dumps(data))
    rb = tmp_path / "model_info" / "cifar10" / "L2" / "Rebuffi2021Fixing_R18_cutmix_ddpm.json"
    rb.parent.mkdir(parents=True)
    rb.write_text(json.dumps({  # RobustBench/robustbench model_info/cifar10/L2/Rebuffi2021Fixing_R18_cutmix_ddpm.json
        "link": "https://arxiv.org/abs/2103.01946",
        "name": "Fixing Data Augmentation to Improve Adversarial Robustness",
        "authors": "Sylvestre-Alvise Rebuffi, Sven Gowal, Dan A. Calian, Florian Stimberg, Olivia Wiles, Timothy Mann",
        "additional_data": False, "number_forward_passes": 1, "dataset": "cifar10", "venue": "arXiv, Mar 2021",
        "architecture": "ResNet-18", "eps": "0.5", "clean_acc": "90.33", "reported": "75.86",
        "footnote": "It uses additional 1M synthetic images in training.", "autoattack_acc": "75.86"}))
    out = run_report([old, aa, rb], tmp_path / "rep")
    t4 = out["tables"]["table4"]
    assert t4[0] == ["method", "cifar10 robust", "average robust", "cifar10 clean", "average clean"]
    assert {r[0]: r[1] for r in t4[1]} == {"urrl": "22.50", "Rebuffi2021Fixing_R18_cutmix_ddpm": "75.86"}
    t1 = {r[0]: r for r in out["tables"]["table1"][1]}
    assert t1["Rebuffi2021Fixing_R18_cutmix_ddpm"][2] == "90.33" and t1["moco"][2] == "90.00"
    assert [r[0] for r in out["tables"]["table2"][1]] == ["moco", "urrl"]  # PGD only where PGD ran
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Table 4: AutoAttack" in md and (tmp_path / "rep" / "table4.csv").is_file()
    assert f"- Rebuffi2021Fixing_R18_cutmix_ddpm: RobustBench model-info claim {rb}, data cifar10" in md
    # without AutoAttack anywhere, the report is the three tables it always was
    assert set(run_report([old], tmp_path / "rep2")["tables"]) == {"table1", "table2", "table3"}
