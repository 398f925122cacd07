"""Linear evaluation and the kNN monitor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.engine.linear import LinearProbe, knn_top1, train_head_on_features
from urrlkit.models import build_encoder
from urrlkit.recipe import LinearEvalConfig

ROOT = Path(__file__).resolve().parents[1]


def test_knn_weighted_vote_by_hand() -> None:
    train_f = torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.95, -0.31]])
    train_y = torch.tensor([1, 0, 0])
    test_f = torch.tensor([[0.8, 0.6]])
    # cosines 1.0, 0.8, 0.574 → weights e^(s/0.07): class 1 ≈ e^14.3 outweighs class 0 ≈ e^11.4 + e^8.2,
    # although a plain majority of the 3 neighbours would say class 0.
    assert knn_top1(train_f, train_y, test_f, torch.tensor([1]), k=3) == 100.0
    assert knn_top1(train_f, train_y, test_f, torch.tensor([1]), k=3, temperature=100.0) == 0.0  # ≈ majority


def test_head_on_separable_features_reaches_full_accuracy() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    feats = torch.nn.functional.one_hot(y, 8).float() * 3 + 0.1 * torch.randn(200, 8, generator=g)
    head = train_head_on_features(feats, y, 4, LinearEvalConfig(epochs=20, lr=0.5, batch_size=32))
    assert (head(feats).argmax(1) == y).float().mean() == 1.0


def test_linear_probe_keeps_encoder_frozen_in_eval_mode() -> None:
    probe = LinearProbe(build_encoder("resnet10", small_stem=True, width=4), 3).train()
    assert not probe.encoder.training and probe.head.training
    assert all(not p.requires_grad for p in probe.encoder.parameters())


@pytest.mark.parametrize("augment", ["none", "crop_flip"])
def test_pretrain_then_linear_eval_via_cli(tmp_path: Path, augment: str) -> None:
    sets = ["data.train_limit=128", "data.test_limit=100", "data.batch_size=32", "model.width=4",
            "pretext.queue_size=64", "optim.epochs=1", "run.trackers=[]", f"run.output_dir='{tmp_path}'",
            "linear_eval.epochs=2", f"linear_eval.augment='{augment}'", "eval.suites=['clean','calibration']"]
    args = ["pretrain", str(ROOT / "recipes" / "quickstart.toml")]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    run = tmp_path / "quickstart"
    scores = json.loads((run / "linear" / "linear_eval.json").read_text())
    assert 0 <= scores["linear_top1"] <= 100 and 0 <= scores["knn_top1"] <= 100
    results = json.loads((run / "linear" / "eval" / "results.json").read_text())
    assert results["metrics"]["clean"]["top1"] == pytest.approx(scores["linear_top1"])
    assert json.loads((run / "linear" / "model" / "config.json").read_text())["kind"] == "classifier"
