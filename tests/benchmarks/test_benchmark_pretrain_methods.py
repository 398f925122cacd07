"""benchmarks/pretrain_methods.py runs both sides of each method and writes its JSON (quick mode, two methods)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about 25 s: four trainings; the default suite stays near its 10 minutes
def test_pretrain_methods_benchmark_quick_run_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "pretrain_methods.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pretrain_methods.py"), "--quick", "--epochs", "2",
                    "--methods", "simclr", "byol", "--monitors", "--out", str(out)], check=True, capture_output=True,
                   text=True, cwd=ROOT, timeout=600)
    report = json.loads(out.read_text())
    assert set(report["methods"]) == {"simclr", "byol"} and report["quick"] is True and report["commit"]
    for row in report["methods"].values():
        assert row["urrlkit_images_per_s"] > 0 and row["bare_images_per_s"] > 0 and row["timed_steps"] > 0
        assert row["ratio"] == pytest.approx(row["urrlkit_images_per_s"] / row["bare_images_per_s"], abs=2e-3)
        assert "monitors_over_training" in row
    assert report["min_ratio"] == min(r["ratio"] for r in report["methods"].values())
