"""benchmarks/augment.py runs and writes the JSON that issue #3 specifies (quick mode, one size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_augment_benchmark_quick_run_writes_the_specified_json(tmp_path: Path) -> None:
    out = tmp_path / "augment.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "augment.py"), "--quick", "--sizes", "32",
                    "--out", str(out)], check=True, capture_output=True, text=True, cwd=ROOT, timeout=600)
    report = json.loads(out.read_text())
    (row,) = report["results"]
    assert row["size"] == 32 and row["device"] == "cpu"
    assert row["urrlkit_views_per_s"] > 0 and row["torchvision_views_per_s"] > 0
    assert row["speedup"] == pytest.approx(row["urrlkit_views_per_s"] / row["torchvision_views_per_s"], rel=0.01)
    assert row["urrlkit_views_per_s"] == max(v for k, v in row.items() if k.startswith("urrlkit_views_per_s_"))
    for family in ("moco_v2", "augmix_allop"):
        timing = row["per_family_1_thread"][family]
        assert timing["urrlkit_us_per_view"] > 0 and timing["torchvision_us_per_view"] > 0
    memory = report["peak_memory"]
    assert memory["batch"] == 256 and memory["size"] == 224 and memory["peak_bytes"] > 0
    # At least the output (2 views × 256 × 3 × 224² float32) is live at the peak.
    assert memory["peak_bytes"] >= 2 * 256 * 3 * 224 * 224 * 4
