"""The [optim] fields for SimCLR, BYOL, MoCo v3 and DINO (optimizer lars, betas, lars_trust, exclude_norm_bias,
schedule_per, weight_decay_end, clip_grad, clip_grad_mode): bounds as one-line errors with exit 2, defaults that
leave MoCo v2 recipes as they were, and the plain values the pretraining stage hands to the engine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from urrlkit.config import OptimConfig, load
from urrlkit.errors import RecipeError

ROOT = Path(__file__).resolve().parents[2]
QUICK = str(ROOT / "recipes" / "quickstart.toml")

BAD = [
    ("optimizer='lamb'", "optim.optimizer"), ("betas=[0.9, 1.0]", "optim.betas"),
    ("betas=[-0.1, 0.9]", "optim.betas"), ("betas=[0.9]", "optim.betas"),
    ("betas=[0.9, 'x']", "optim.betas"), ("lars_trust=0", "optim.lars_trust"),
    ("lars_trust=2", "optim.lars_trust"), ("schedule_per='iteration'", "optim.schedule_per"),
    ("weight_decay_end=-0.1", "optim.weight_decay_end"), ("clip_grad=0", "optim.clip_grad"),
    ("clip_grad=inf", "optim.clip_grad"), ("clip_grad_mode='layer'", "optim.clip_grad_mode"),
    ("exclude_norm_bias='maybe'", "optim.exclude_norm_bias"),
]


@pytest.mark.parametrize(("value", "field"), BAD)
def test_bad_values_are_one_line_errors_naming_the_field(value: str, field: str) -> None:
    with pytest.raises(RecipeError) as err:
        load(QUICK, [f"optim.{value}"])
    msg = str(err.value)
    assert msg.startswith(f"{QUICK}: {field}") and "\n" not in msg, msg


def test_a_weight_decay_schedule_needs_a_weight_decay_to_start_from() -> None:
    with pytest.raises(RecipeError, match=r": optim.weight_decay_end: 0.4 needs a nonzero weight_decay"):
        load(QUICK, ["optim.weight_decay=0", "optim.weight_decay_end=0.4"])
    assert load(QUICK, ["optim.weight_decay=0.04", "optim.weight_decay_end=0.4"]).optim.weight_decay_end == 0.4


def test_the_cli_exits_2_on_a_bad_optim_value() -> None:
    from urrlkit.cli import app

    result = CliRunner().invoke(app, ["recipe", "validate", QUICK, "--set", "optim.betas=[0.9, 1.5]"])
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "optim.betas" in lines[0], result.stderr


def test_dino_like_values_validate_and_recipe_validation_imports_neither_torch_nor_timm() -> None:
    o = OptimConfig(optimizer="adamw", lr_per_256=5e-4, betas=(0.9, 0.95), weight_decay=0.04,
                    weight_decay_end=0.4, exclude_norm_bias=True, schedule_per="step", warmup_epochs=10,
                    clip_grad=3.0, clip_grad_mode="per_param")
    assert o.loop_kwargs() == {"schedule_per": "step", "weight_decay": 0.04, "weight_decay_end": 0.4,
                               "clip_grad": 3.0, "clip_grad_mode": "per_param"}
    assert o.optimizer_kwargs() == {"exclude_norm_bias": True, "betas": (0.9, 0.95), "trust": 0.001}
    import subprocess

    code = ("import sys; from urrlkit.config import load; load(sys.argv[1], ['optim.optimizer=\"lars\"']); "
            "assert 'timm' not in sys.modules and 'torch' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code, QUICK], check=True, timeout=300)


def test_the_defaults_keep_moco_v2_and_hand_the_engine_its_old_arguments() -> None:
    from urrlkit.engine.loop import LoopSpec
    from urrlkit.engine.optim import build_optimizer

    r = load(ROOT / "recipes" / "paper" / "moco_v2.toml")
    o = r.optim
    assert (o.optimizer, o.exclude_norm_bias, o.schedule_per, o.weight_decay_end, o.clip_grad) == (
        "sgd", False, "epoch", None, None)
    assert (o.betas, o.lars_trust, o.clip_grad_mode) == ((0.9, 0.999), 0.001, "global")
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    opt = build_optimizer(model, o.optimizer, 0.03, o.momentum, o.weight_decay, **o.optimizer_kwargs())
    old = torch.optim.SGD(list(model.parameters()), lr=0.03, momentum=o.momentum, weight_decay=o.weight_decay)
    assert opt.state_dict() == old.state_dict()  # one group, every parameter decaying (main_moco.py)
    spec = LoopSpec(epochs=o.epochs, lr=0.03, **o.loop_kwargs())
    assert spec == LoopSpec(epochs=o.epochs, lr=0.03, weight_decay=o.weight_decay)
    # and a LARS recipe builds timm's optimizer with the recipe's trust coefficient
    lars = OptimConfig(optimizer="lars", lr_sqrt=0.075, weight_decay=1e-6, exclude_norm_bias=True, lars_trust=0.02)
    opt = build_optimizer(model, lars.optimizer, lars.effective_lr(256), lars.momentum, lars.weight_decay,
                          **lars.optimizer_kwargs())
    assert [(g["lr"], g["weight_decay"], g["trust_coeff"], g["always_adapt"]) for g in opt.param_groups] == [
        (1.2, 1e-6, 0.02, True), (1.2, 0.0, 0.02, False)]
