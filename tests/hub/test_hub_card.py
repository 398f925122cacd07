"""Model cards: template sources, metadata (model-index) round trip, content, packaging for pip installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from urrlkit.hub.card import card_summary, eval_table, render_card

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {
    "urrlkit_version": "0.1.0", "kind": "encoder", "feature_dim": 512, "num_classes": None, "input_size": 32,
    "encoder": {"backbone": "resnet18", "small_stem": True, "width": None, "feature_dim": 512,
                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "stage": "pretrain", "recipe_hash": "abc123def456",
    "recipe": {"data": {"dataset": "cifar10", "image_size": 32, "batch_size": 256},
               "pretext": {"method": "moco_v2", "p": 0.5, "queue_size": 4096, "temperature": 0.2},
               "optim": {"optimizer": "sgd", "lr": 0.06, "epochs": 200},
               "finetune": {"regularizer": {"type": "l2sp", "alpha": 0.01, "beta": 0.01}},
               "hub": {"license": "mit", "tags": ["urrlkit", "cifar"]}},
}
RESULTS = {"dataset": "cifar10", "metrics": {
    "clean": {"top1": 88.123, "n": 10000},
    "corruptions": {"benchmark": "cifar10-c", "error": 25.0, "mce": 80.5, "rms_calibration": 9.9,
                    "per_corruption": {}},
}}


def test_card_metadata_round_trips_through_huggingface_hub() -> None:
    card = ModelCard(str(render_card("org/r18", CONFIG, RESULTS)))
    assert card.data.license == "mit" and "cifar" in card.data.tags
    assert card.data.pipeline_tag == "image-feature-extraction"
    got = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got == {("cifar10", "accuracy"): 88.12, ("cifar10-c", "mce"): 80.5, ("cifar10-c", "error"): 25.0,
                   ("cifar10-c", "rms_calibration_error"): 9.9}
    assert card.data.model_name == "r18"


def test_card_body_covers_the_issue_checklist() -> None:
    text = ModelCard(str(render_card("org/r18", CONFIG, RESULTS))).text
    for needle in [
        "MoCo v2",  # method
        "`augmix_allop` (probability 0.50), `moco_v2` (probability 0.50)",  # pretext families and p
        "p (probability of T_rob per view) | 0.5",
        "L2-SP, α = 0.01, β = 0.01",  # regularizer and weight
        "`cifar10` training split at 32 px",  # training data
        "| mCE (AlexNet-normalised) | cifar10-c | 80.50 |",  # evaluation table
        "| Top-1 accuracy (clean) | cifar10 | 88.12 | n = 10000 |",
        'encoder = load_backbone("hf-hub:org/r18")',  # three-line use
        "Transferable Unsupervised Robust Representation Learning",  # citation
        "`mit`",  # license
        "abc123def456",  # recipe hash
    ]:
        assert needle in text, needle


def test_card_without_results_says_so() -> None:
    card = render_card("org/r18", CONFIG, None)
    assert not card.data.eval_results and "No evaluation results were recorded" in card.text


def test_eval_table_tolerates_partial_results() -> None:
    rows, evals = eval_table({"dataset": "d", "metrics": {"adversarial": {"robust_top1": None, "eps": 0.5}}})
    assert rows[0]["value"] == "n/a" and evals == []


def test_pull_summary_lists_metrics(tmp_path: Path) -> None:
    render_card("org/r18", CONFIG, RESULTS).save(tmp_path / "README.md")
    lines = card_summary(tmp_path)
    assert "license: mit" in lines and "Top-1 accuracy (clean) on cifar10: 88.12" in lines


def test_pyproject_ships_the_templates_as_package_data() -> None:
    import fnmatch
    import tomllib

    setuptools_cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = setuptools_cfg["package-data"]["urrlkit"]
    for f in (ROOT / "urrlkit" / "hub" / "cards").iterdir():
        rel = f.relative_to(ROOT / "urrlkit").as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not package data"


@pytest.mark.slow
def test_templates_ship_in_a_non_editable_install(tmp_path: Path) -> None:
    """Build a wheel from a copy of the sources and render a card from the installed files alone."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copytree(ROOT / "urrlkit", src / "urrlkit", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "README.md").write_text("stub\n")  # pyproject names a readme; its content is irrelevant here
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                           capture_output=True, text=True, timeout=180)
    assert build.returncode == 0, build.stderr[-2000:]
    site = tmp_path / "site"
    with zipfile.ZipFile(next((tmp_path / "dist").glob("urrlkit-*.whl"))) as whl:
        whl.extractall(site)
    code = ("import urrlkit.hub.card as c, sys; assert c.__file__.startswith(sys.argv[1]), c.__file__; "
            "print(c.render_card('org/x', {'encoder': {'backbone': 'resnet18'}}).content[:3])")
    # cwd elsewhere and only the unpacked wheel on the path: the editable checkout must not be what imports.
    proc = subprocess.run([sys.executable, "-c", code, str(site)], env={"PYTHONPATH": str(site), "PATH": ""},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("---")
