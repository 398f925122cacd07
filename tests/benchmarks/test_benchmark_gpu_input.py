"""The issue-15 benchmark pieces run on a CPU: the launch-count profile, and the whole prepared GPU script in its
dry mode (tiny sizes, device = cpu), which writes the three JSONs the GPU run writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_launch_count_profile_writes_counts_per_family(tmp_path: Path) -> None:
    out = tmp_path / "ops.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "augment_ops.py"), "--batch", "4", "--small-batch", "2",
                    "--size", "96", "--decode-batch", "2", "--families", "moco_v2,urrl", "--out", str(out)],
                   check=True, capture_output=True, text=True, cwd=ROOT, timeout=300)
    report = json.loads(out.read_text())
    assert set(report["families"]) == {"moco_v2", "urrl"} and report["views_per_call"] == 8
    for rows in report["families"].values():
        for counts in rows.values():
            assert 0 < counts["launching_ops"] <= counts["leaf_ops"] <= counts["aten_ops"]
    assert report["device_decoding"]["decode_and_cut"]["launching_ops"] > 0  # > 64 px: boxes (≤ 64: pad crops)


@pytest.mark.slow
def test_gpu_script_dry_run(tmp_path: Path) -> None:
    env = {**os.environ, "URRL_GPU_DRY": "1", "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_issue15.sh")], check=True, env=env, cwd=ROOT,
                   capture_output=True, text=True, timeout=600)
    augment = json.loads((tmp_path / "augment_gpu.json").read_text())
    assert augment["jpeg_path"]["urrlkit_jpeg"]["device_views_per_s"] > 0
    assert "torchvision_v2_batch" in augment["results"][0]["other_libraries"]
    jpeg = json.loads((tmp_path / "pretrain_jpeg_gpu.json").read_text())
    assert jpeg["decode"] == "device" and jpeg["urrlkit_engine_pairs_per_s"] > 0
    assert jpeg["bare_loop_official_input_pairs_per_s"] > 0
    assert json.loads((tmp_path / "pretrain_gpu.json").read_text())["ratio"] > 0
    assert "== done" in (tmp_path / "log.txt").read_text()
