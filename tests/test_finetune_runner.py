"""`urrl finetune` end to end on the bundled sample: every regularizer trains, sim with λ = 0 equals none
exactly, the sweep chooses on validation data, and CLI shorthands map onto the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.errors import UrrlError
from urrlkit.finetune.runner import apply_cli, parse_sweep, run_finetune
from urrlkit.hub import save_model
from urrlkit.models import build_encoder
from urrlkit.recipe import load

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random encoder whose BN running statistics are fitted to the data, as a pretrained one's are."""
    from urrlkit.data import DataRequest, build

    torch.manual_seed(0)
    enc = build_encoder("resnet10", small_stem=True, width=4)
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
    x = build("cifar10-sample", DataRequest(None, "train", 32)).images.float() / 255
    with torch.no_grad():
        for chunk in x.split(250):
            enc.train()(chunk)
    d = tmp_path_factory.mktemp("enc") / "model"
    save_model(enc.eval(), d)
    return d


def recipe(tmp_path: Path, name: str, *extra: str):
    return load(ROOT / "recipes" / "quickstart.toml", [
        "data.train_limit=96", "data.test_limit=64", "finetune.batch_size=32", "finetune.epochs=1",
        "eval.suites=[]", f"run.output_dir='{tmp_path}'", f"run.name='{name}'", *extra])


@pytest.mark.parametrize("reg", ["none", "l2sp", "sim", "adversarial"])
def test_each_regularizer_finetunes(tmp_path: Path, encoder_dir: Path, reg: str) -> None:
    extra = ["finetune.regularizer={type='adversarial', steps=2}"] if reg == "adversarial" else []
    out = run_finetune(recipe(tmp_path, "ft", *extra), str(encoder_dir), reg=None if extra else reg)
    scores = json.loads((out / "finetune.json").read_text())
    assert 0.0 <= scores["test_top1"] <= 100.0 and "val_top1" in scores
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["kind"] == "classifier" and cfg["regularizer"]["type"] == reg
    before = load_file(str(encoder_dir / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after["encoder." + k])]
    assert changed, "full protocol must update the encoder"


def test_sim_with_zero_weight_equals_none_exactly(tmp_path: Path, encoder_dir: Path) -> None:
    a = run_finetune(recipe(tmp_path / "a", "x"), str(encoder_dir), reg="none")
    b = run_finetune(recipe(tmp_path / "b", "x"), str(encoder_dir), reg="sim", reg_weight=0.0)
    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_linear_protocol_freezes_encoder(tmp_path: Path, encoder_dir: Path) -> None:
    out = run_finetune(recipe(tmp_path, "lin", "finetune.protocol='linear'"), str(encoder_dir), reg="none")
    before = load_file(str(encoder_dir / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    assert all(torch.equal(before[k], after["encoder." + k]) for k in before)


def test_sweep_picks_by_validation_and_records_trials(tmp_path: Path, encoder_dir: Path) -> None:
    out = run_finetune(recipe(tmp_path, "sw"), str(encoder_dir), reg="sim",
                       sweep=["regularizer.weight=0,5"])
    trials = json.loads((out / "sweep.json").read_text())
    assert [t["settings"]["regularizer.weight"] for t in trials] == [0.0, 5.0]
    best = max(trials, key=lambda t: t["val_top1"])
    chosen = load(out / "recipe.toml").finetune.regularizer.weight
    assert chosen == best["settings"]["regularizer.weight"]


def test_cli_shorthands_and_errors(tmp_path: Path) -> None:
    r = recipe(tmp_path, "c")
    assert apply_cli(r, "l2sp", 0.5).finetune.regularizer.alpha == 0.5
    assert apply_cli(r, None, 3.0).finetune.regularizer.weight == 3.0
    assert parse_sweep(["regularizer.weight=0.1,1"], {}) == {"regularizer.weight": [0.1, 1.0]}
    res = CliRunner().invoke(app, ["finetune", str(ROOT / "recipes" / "quickstart.toml"), "--from",
                                   str(tmp_path / "nope"), "--reg", "none"])
    assert res.exit_code == 2
    assert "nope" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["finetune", str(ROOT / "recipes" / "quickstart.toml"), "--from", "x",
                                   "--reg", "bogus"])
    assert res.exit_code == 2 and "regularizer" in res.output


def test_finetune_resume_is_bit_identical(tmp_path: Path, encoder_dir: Path) -> None:
    from urrlkit.finetune.runner import finetune_once
    from urrlkit.hub import load_backbone

    sets = ["finetune.epochs=2", "finetune.regularizer={type='sim', weight=0.001}"]
    a = run_finetune(recipe(tmp_path / "a", "x", *sets), str(encoder_dir))
    r = recipe(tmp_path / "b", "x", *sets)
    out = r.run_dir / "finetune-sim"
    finetune_once(r, load_backbone(encoder_dir), out, with_val=True, stop_after=3)  # killed mid-epoch 2
    assert (out / "checkpoints" / "latest").is_file()
    with pytest.raises(UrrlError, match="--resume"):
        run_finetune(r, str(encoder_dir))
    b = run_finetune(r, str(encoder_dir), resume=True)
    wa, wb = (load_file(str(p / "model" / "model.safetensors")) for p in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
