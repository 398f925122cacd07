"""The learning-rate rule: optim.lr (absolute), optim.lr_per_256 (MoCo's linear scaling) or optim.lr_sqrt
(SimCLR's square-root scaling), one per recipe layer, resolved in one place (OptimConfig.effective_lr) that
pretraining uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from urrlkit.config import DEFAULT_LR, OptimConfig, load, scaled_lr, validate_dict
from urrlkit.config.optim import sqrt_scaled_lr
from urrlkit.errors import RecipeError
from urrlkit.pretext.workflow import pretrain

ROOT = Path(__file__).resolve().parents[2]


def test_scaled_lr_is_the_linear_rule() -> None:
    # main_moco.py: --lr 0.03 at --batch-size 256; the MoCo README: --lr 0.015 --batch-size 128 on 4 GPUs.
    assert scaled_lr(0.03, 256) == 0.03
    assert scaled_lr(0.03, 128) == 0.015
    assert scaled_lr(0.03, 512) == 0.06
    assert scaled_lr(0.3, 64) == 0.075


def test_sqrt_scaled_lr_is_simclrs_rule() -> None:
    # google-research/simclr: learning_rate 0.075 with learning_rate_scaling=sqrt at batch 4096 is 0.075·64
    assert sqrt_scaled_lr(0.075, 4096) == 4.8
    assert sqrt_scaled_lr(0.5, 256) == 8.0
    assert OptimConfig(lr_sqrt=0.075).effective_lr(4096) == 4.8
    # one optimizer step sees batch × grad_accum images: √(1024 · 4) = 64
    assert OptimConfig(lr_sqrt=0.075, grad_accum=4).effective_lr(1024) == 4.8


def test_effective_lr_absolute_per_256_and_default() -> None:
    assert OptimConfig(lr=0.5).effective_lr(1024) == 0.5  # absolute: the batch does not matter
    assert OptimConfig(lr_per_256=0.03).effective_lr(512) == 0.06
    # gradient accumulation averages grad_accum batches into one step of batch × grad_accum images
    assert OptimConfig(lr_per_256=0.03, grad_accum=4).effective_lr(64) == 0.03
    neither = OptimConfig()
    assert (neither.lr, neither.lr_per_256, neither.lr_sqrt, neither.effective_lr(64)) == (
        DEFAULT_LR, None, None, DEFAULT_LR)


def test_both_in_one_layer_is_a_one_line_error() -> None:
    with pytest.raises(RecipeError) as err:
        validate_dict({"optim": {"lr": 0.3, "lr_per_256": 0.03}}, "r.toml")
    msg = str(err.value)
    assert msg.startswith("r.toml: optim: give one of lr") and "here lr = 0.3, lr_per_256 = 0.03" in msg
    assert "\n" not in msg
    for pair in ({"lr": 0.3, "lr_sqrt": 0.075}, {"lr_per_256": 0.03, "lr_sqrt": 0.075}):
        with pytest.raises(RecipeError, match=r"^r.toml: optim: give one of lr .*lr_sqrt = 0.075$"):
            validate_dict({"optim": pair}, "r.toml")
    with pytest.raises(RecipeError, match=r"optim.lr_per_256 = -1"):
        validate_dict({"optim": {"lr_per_256": -1}}, "r.toml")
    with pytest.raises(RecipeError, match=r"optim.lr_sqrt = 0"):
        validate_dict({"optim": {"lr_sqrt": 0}}, "r.toml")


def test_a_later_layer_replaces_the_other_form(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text("[optim]\nlr_per_256 = 0.03\nepochs = 7\n")
    child = tmp_path / "child.toml"
    child.write_text('extends = "base.toml"\n[optim]\nlr = 0.3\n')
    r = load(child)
    assert (r.optim.lr, r.optim.lr_per_256, r.optim.epochs) == (0.3, None, 7)
    back = load(child, ["optim.lr_per_256=0.06"])
    assert (back.optim.lr, back.optim.lr_per_256) == (None, 0.06)
    assert load(tmp_path / "base.toml", ["optim.lr=0.1"]).optim.effective_lr(512) == 0.1
    # the resolved recipe (what a run saves) holds only the form in use and loads back equal
    saved = tmp_path / "saved.toml"
    saved.write_text(r.to_toml())
    assert load(saved).to_dict() == r.to_dict()


def test_a_later_layer_replaces_either_other_form_of_three(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text("[optim]\nlr_per_256 = 0.03\nepochs = 7\n")
    (tmp_path / "sqrt.toml").write_text('extends = "base.toml"\n[optim]\nlr_sqrt = 0.075\n')
    (tmp_path / "abs.toml").write_text('extends = "sqrt.toml"\n[optim]\nlr = 0.3\n')
    r = load(tmp_path / "sqrt.toml")
    rules = ("lr", "lr_per_256", "lr_sqrt")

    def given(recipe: Any) -> dict[str, float]:
        return {k: getattr(recipe.optim, k) for k in rules if getattr(recipe.optim, k) is not None}

    assert (given(r), r.optim.epochs, r.optim.effective_lr(4096)) == ({"lr_sqrt": 0.075}, 7, 4.8)
    assert given(load(tmp_path / "abs.toml")) == {"lr": 0.3}  # two layers up: lr_per_256 and lr_sqrt both gone
    for rule, value in (("lr", 0.1), ("lr_per_256", 0.06), ("lr_sqrt", 0.1)):
        for name in ("base.toml", "sqrt.toml", "abs.toml"):
            assert given(load(tmp_path / name, [f"optim.{rule}={value}"])) == {rule: value}, (rule, name)
    # a --set replaces a form given in the same layer's file too; the resolved recipe loads back equal
    saved = tmp_path / "saved.toml"
    saved.write_text(r.to_toml())
    assert load(saved).to_dict() == r.to_dict() and "lr_per_256" not in saved.read_text()
    # one file giving two forms stays an error, also below an extending file that gives none
    (tmp_path / "two.toml").write_text("[optim]\nlr = 0.3\nlr_sqrt = 0.075\n")
    (tmp_path / "child.toml").write_text('extends = "two.toml"\n[optim]\nepochs = 3\n')
    with pytest.raises(RecipeError, match="give one of lr"):
        load(tmp_path / "child.toml")


def test_paper_recipe_uses_the_official_rule() -> None:
    for name in ("paper/imagenet_base.toml", "urrl.toml", "paper/moco_v2.toml"):
        r = load(ROOT / "recipes" / name)
        assert r.optim.lr_per_256 == 0.03 and r.optim.lr is None, name
        assert r.optim.effective_lr(r.data.batch_size) == 0.03
    assert load(ROOT / "recipes/urrl.toml", ["data.batch_size=512"]).optim.effective_lr(512) == 0.06
    text = (ROOT / "recipes/paper/imagenet_base.toml").read_text()
    assert "67.59" in text and "lr = 0.3" in text  # the reason, and the paper's value as the alternative


def test_pretraining_trains_at_the_scaled_lr(tmp_path: Path) -> None:
    r = load(ROOT / "recipes" / "quickstart.toml", [
        "data.train_limit=64", "data.test_limit=32", "data.batch_size=32", "model.backbone='resnet10'",
        "model.width=4", "pretext.queue_size=64", "pretext.head_dim=16", "pretext.bn_groups=2",
        "optim.epochs=1", "optim.log_every=1", "optim.schedule='constant'", "optim.lr_per_256=0.08",
        "run.trackers=[]", f"run.output_dir='{tmp_path}'", "run.name='lr'", "linear_eval.enabled=false"])
    assert r.optim.lr is None  # quickstart's own `lr` is replaced by the --set
    pretrain(r, stop_after=1)
    logged = [json.loads(x) for x in (tmp_path / "lr" / "metrics.jsonl").read_text().splitlines()]
    assert [x["lr"] for x in logged if "lr" in x] == [0.08 * 32 / 256]
