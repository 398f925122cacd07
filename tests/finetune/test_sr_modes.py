"""Eq. 4's open choices (urrlkit/finetune/regularizers.py): how f*'s BatchNorm layers normalise (frozen_bn:
eval / train / match, running statistics never updated) and the batch-size-independent scale of ‖S − S*‖."""

from __future__ import annotations

import copy
import inspect
import math

import pytest
import torch

from urrlkit.config import SimReg, validate_dict
from urrlkit.errors import RecipeError
from urrlkit.finetune.linear import LinearProbe
from urrlkit.finetune.regularizers import (
    FrozenTarget,
    build_objective,
    build_sim,
    frozen_copy,
    similarity_regularization,
    task_loss,
)
from urrlkit.models import Classifier, build_encoder


def _pretrained() -> torch.nn.Module:
    """A small encoder whose BN running statistics are not the initial ones (as a pretrained encoder's)."""
    torch.manual_seed(0)
    enc = build_encoder("resnet10", small_stem=True, width=4).train()
    with torch.no_grad():
        for k in range(3):
            enc(torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(k)) * 2)
    return enc.eval()


def _x(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _buffers(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.named_buffers()}


def test_batch_scale_is_the_per_entry_value_hand_computed() -> None:
    # The three-image batch of test_finetune_regularizers: S − S* = [[0,-1,0],[-1,3,1],[0,1,1]], ‖·‖_F = √14,
    # Σ|·| = 8, mean of squares 14/9; per entry: √14 / 3 (the RMS of the 9 entries), 8 / 9, 14 / 9.
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    f_star = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert similarity_regularization(f, f_star, "fro", scale="batch").item() == pytest.approx(math.sqrt(14) / 3,
                                                                                              abs=1e-15)
    assert similarity_regularization(f, f_star, "l1", scale="batch").item() == pytest.approx(8 / 9, abs=1e-15)
    assert similarity_regularization(f, f_star, "mse", scale="batch").item() == pytest.approx(14 / 9, abs=1e-15)
    assert similarity_regularization(f, f_star, "fro", scale="none").item() == math.sqrt(14)
    with pytest.raises(ValueError, match="unknown scale 'mean'"):
        similarity_regularization(f, f_star, scale="mean")


@pytest.mark.parametrize("norm", ["fro", "l1", "mse"])
def test_batch_scale_does_not_grow_with_the_batch(norm: str) -> None:
    """The same images twice over (B → 2B) repeat every entry of S − S* four times: the unscaled Frobenius norm
    doubles and Σ|·| quadruples, the per-entry values stay exactly."""
    g = torch.Generator().manual_seed(0)
    f, f_star = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    one = similarity_regularization(f, f_star, norm, scale="batch")
    two = similarity_regularization(f.repeat(2, 1), f_star.repeat(2, 1), norm, scale="batch")
    assert two.item() == pytest.approx(one.item(), rel=1e-12)
    growth = {"fro": 2.0, "l1": 4.0, "mse": 1.0}[norm]
    unscaled = [similarity_regularization(a, b, norm) for a, b in ((f, f_star), (f.repeat(2, 1), f_star.repeat(2, 1)))]
    assert (unscaled[1] / unscaled[0]).item() == pytest.approx(growth, rel=1e-12)


@pytest.mark.parametrize("mode", ["train", "match"])
def test_batch_statistics_make_s_equal_s_star_at_the_pretrained_weights(mode: str) -> None:
    enc = _pretrained()
    model = Classifier(copy.deepcopy(enc), 3).train()
    f_star = FrozenTarget(enc, mode, model)
    x = _x()
    _, feats = model(x, return_features=True)
    assert torch.equal(f_star(x), feats)  # the same batch statistics, bit for bit
    _, _, stats = build_objective("sim", Classifier(copy.deepcopy(enc), 3).train(), enc, weight=1.0,
                                  frozen_bn=mode, scale="none")(x, torch.tensor([0, 1, 2, 0, 1, 2]))
    assert stats["sim"].item() == pytest.approx(1e-6)  # the clamp's floor: ‖S − S*‖ = 0
    assert f_star.encoder.training is False  # dropout and the like stay off whatever the BN mode


def test_eval_mode_is_the_running_statistics_and_today_s_behaviour() -> None:
    enc = _pretrained()
    model = Classifier(copy.deepcopy(enc), 3).train()
    x, y = _x(), torch.tensor([0, 1, 2, 0, 1, 2])
    f_star = FrozenTarget(enc, "eval")
    assert torch.equal(f_star(x), frozen_copy(enc)(x))
    _, feats = model(x, return_features=True)
    rel = (feats @ feats.T - f_star(x) @ f_star(x).T).norm() / (f_star(x) @ f_star(x).T).norm()
    assert rel.item() > 0.01  # train-mode BN vs running statistics: S ≠ S* before any update
    # frozen_bn = "eval", scale = "none" is the objective as it was: task + λ‖S − S*‖_F against the eval copy
    tuned = Classifier(copy.deepcopy(enc), 3).train()
    reference = copy.deepcopy(tuned)
    loss, logits, _ = build_objective("sim", tuned, enc, weight=0.5, frozen_bn="eval", scale="none")(x, y)
    ref_logits, ref_feats = reference(x, return_features=True)
    expected = task_loss(ref_logits, y) + 0.5 * similarity_regularization(ref_feats, frozen_copy(enc)(x))
    assert torch.equal(loss.detach(), expected.detach()) and torch.equal(logits, ref_logits)


@pytest.mark.parametrize("mode", ["eval", "train", "match"])
def test_the_frozen_encoder_never_changes(mode: str) -> None:
    enc = _pretrained()
    before = _buffers(enc)
    model = Classifier(copy.deepcopy(enc), 3).train()
    f_star = FrozenTarget(enc, mode, model)
    start = _buffers(f_star.encoder)
    assert start.keys() == before.keys() and all(torch.equal(start[k], before[k]) for k in before)
    for seed in range(3):
        f_star(_x(seed=seed) * 3)
    after = _buffers(f_star.encoder)
    assert all(torch.equal(after[k], start[k]) for k in start)  # running statistics and counters untouched
    assert all(not p.requires_grad for p in f_star.encoder.parameters())
    assert all(torch.equal(before[k], v) for k, v in _buffers(enc).items())  # nor the pretrained encoder's


def test_match_follows_each_bn_layer_of_the_tuned_encoder() -> None:
    enc = _pretrained()
    probe = LinearProbe(copy.deepcopy(enc), 3).train()  # the linear protocol: encoder frozen in eval mode
    f_star = FrozenTarget(enc, "match", probe)
    assert not any(f_star.batch_statistics().values())
    x = _x()
    assert torch.equal(f_star(x), probe(x, return_features=True)[1])  # S = S* throughout
    model = Classifier(copy.deepcopy(enc), 3).train()
    name = next(iter(f_star.batch_statistics()))
    dict(model.encoder.named_modules())[name].eval()  # one BN layer frozen by the user
    modes = FrozenTarget(enc, "match", model).batch_statistics()
    assert modes[name] is False and all(v for k, v in modes.items() if k != name)
    assert all(FrozenTarget(enc, "train").batch_statistics().values())
    assert not any(FrozenTarget(enc, "eval").batch_statistics().values())


def test_frozen_bn_choices_are_checked() -> None:
    enc = _pretrained()
    with pytest.raises(ValueError, match="unknown frozen_bn 'batch'; allowed: eval, train, match"):
        FrozenTarget(enc, "batch")
    with pytest.raises(ValueError, match="needs the model being tuned"):
        FrozenTarget(enc, "match")


def test_builder_defaults_are_the_recipe_defaults() -> None:
    params = inspect.signature(build_sim).parameters
    defaults = SimReg().builder_args()[1]
    assert {k: params[k].default for k in defaults} == defaults
    assert (defaults["frozen_bn"], defaults["scale"]) == ("eval", "batch")


@pytest.mark.parametrize(("key", "value", "allowed"), [("frozen_bn", "running", "allowed: eval, train, match"),
                                                       ("scale", "mean", "allowed: none, batch")])
def test_a_bad_choice_is_one_line_naming_the_field(key: str, value: str, allowed: str) -> None:
    with pytest.raises(RecipeError) as info:
        validate_dict({"finetune": {"regularizer": {"type": "sim", key: value}}}, "r.toml")
    msg = str(info.value)
    assert "\n" not in msg and f"finetune.regularizer.{key}" in msg and allowed in msg


@pytest.mark.parametrize(("scale", "weight"), [("none", 1.0), ("batch", 16.0)])
def test_sim_steps_keep_similarities_closer_than_plain_steps(scale: str, weight: float) -> None:
    """Eq. 4's purpose with the default f* (eval) under either scale (λ = 16 per entry is λ = 1 unscaled at
    B = 16), over three small SGD steps from the same start."""
    x, y = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(3)), torch.arange(16) % 3
    enc = _pretrained()
    dist = {}
    for name, values in (("none", {}), ("sim", {"weight": weight, "scale": scale})):
        model = Classifier(copy.deepcopy(enc), 3).train()
        objective = build_objective(name, model, enc, **values)
        for _ in range(3):
            model.zero_grad()
            objective(x, y)[0].backward()
            with torch.no_grad():
                for p in model.parameters():
                    if p.grad is not None:
                        p.sub_(1e-2 * p.grad)
        with torch.no_grad():
            dist[name] = similarity_regularization(model.encoder(x), FrozenTarget(enc, "eval")(x)).item()
    assert dist["sim"] < 0.5 * dist["none"]


def test_the_frobenius_pull_does_not_fade_as_s_approaches_s_star() -> None:
    """Why an f* with S = S* at the start (train, match) overshoots under SGD: the gradient of ‖S − S*‖_F keeps its
    size however small S − S* is (it is D/‖D‖ through S), where the mean square's shrinks with D."""
    g = torch.Generator().manual_seed(0)
    f_star, step = torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(8, 4, generator=g,
                                                                                      dtype=torch.float64)
    sizes = {}
    for norm in ("fro", "mse"):
        for eps in (1e-1, 1e-4):
            f = (f_star + eps * step).requires_grad_(True)
            similarity_regularization(f, f_star, norm).backward()
            assert f.grad is not None
            sizes[norm, eps] = f.grad.norm().item()
    assert sizes["fro", 1e-4] / sizes["fro", 1e-1] == pytest.approx(1.0, rel=0.2)
    assert sizes["mse", 1e-4] / sizes["mse", 1e-1] < 2e-3
