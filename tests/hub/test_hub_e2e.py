"""End to end (slow): CPU-train the quickstart model, push it to the stand-in Hub with its card and metrics,
pull it into a clean cache, load it by id, and fine-tune it with `urrl finetune --from org/name`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from standin_hub import StandinHub
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.hub import load_backbone, read_config

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.toml"


@pytest.mark.slow
def test_quickstart_push_pull_finetune(standin_hub: StandinHub, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not QUICKSTART.is_file():
        pytest.skip("recipes/quickstart.toml is not there yet")
    monkeypatch.setenv("HF_TOKEN", "hf_e2e_token_for_the_standin")
    cli = CliRunner()
    small = ["--set", f"run.output_dir='{tmp_path / 'runs'}'", "--set", "optim.epochs=1",
             "--set", "data.train_limit=256", "--set", "data.test_limit=200", "--set", "linear_eval.epochs=5"]
    res = cli.invoke(app, ["pretrain", str(QUICKSTART), *small])
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "runs" / "quickstart"

    res = cli.invoke(app, ["push", str(run_dir), "--repo", "org/quickstart"])
    assert res.exit_code == 0, res.output
    card = ModelCard(standin_hub.files("org/quickstart")["README.md"].decode())
    metrics = {r.metric_type for r in card.data.eval_results or []}
    assert "accuracy" in metrics, metrics  # the linear evaluation's clean top-1 reached the model-index
    assert json.loads(standin_hub.files("org/quickstart")["config.json"])["recipe"]["pretext"]["p"] == 0.5

    # A clean cache: nothing from the push or earlier pulls can be reused.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "fresh_hf_home"))
    res = cli.invoke(app, ["pull", "org/quickstart"])
    assert res.exit_code == 0 and str(tmp_path / "fresh_hf_home") in res.stdout, res.output
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(load_backbone("hf-hub:org/quickstart")(x), load_backbone(run_dir)(x))

    res = cli.invoke(app, ["finetune", str(QUICKSTART), "--from", "org/quickstart", *small,
                           "--set", "run.name='ft-from-hub'", "--set", "finetune.epochs=1"])
    assert res.exit_code == 0, res.output
    ft_models = list((tmp_path / "runs" / "ft-from-hub").glob("finetune-*/model"))
    assert len(ft_models) == 1 and read_config(ft_models[0])["source"] == "org/quickstart"
