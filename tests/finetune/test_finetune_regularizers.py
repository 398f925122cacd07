"""Each regularizer's value and gradient on hand-computable inputs (paper Eq. 3-4, L2-SP)."""

import copy
import math

import pytest
import torch

from urrlkit.finetune.regularizers import (
    build_objective,
    frozen_copy,
    l2sp_penalty,
    regularized_parameters,
    similarity_matrix,
    similarity_regularization,
    task_loss,
)
from urrlkit.models import Classifier, build_encoder


def test_similarity_matrix_is_pairwise_dot_products() -> None:
    f = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    assert torch.equal(similarity_matrix(f), torch.tensor([[5.0, 3.0], [3.0, 9.0]]))
    cos = similarity_matrix(f, normalize=True)
    assert cos[0, 1].item() == pytest.approx(3 / (math.sqrt(5) * 3))


def test_sim_reg_value_and_gradient() -> None:
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    f_star = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # S = I, S* = [[1,1],[1,1]] → S − S* = [[0,-1],[-1,0]] → ‖·‖_F = √2
    loss = similarity_regularization(f, f_star, "fro")
    assert loss.item() == pytest.approx(math.sqrt(2))
    loss.backward()
    # d‖D‖/dS = D/‖D‖; dS/df contributes (D + Dᵀ) f = 2 D f; here 2·D f / √2
    d = torch.tensor([[0.0, -1.0], [-1.0, 0.0]])
    expected = 2 * d @ f.detach() / math.sqrt(2)
    assert torch.allclose(f.grad, expected)
    assert similarity_regularization(f.detach(), f_star, "l1").item() == pytest.approx(2.0)
    assert similarity_regularization(f.detach(), f_star, "mse").item() == pytest.approx(0.5)


def test_sim_reg_is_zero_for_identical_and_rotation_invariant() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(6, 4, generator=g)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g))
    # Eq. 4 constrains only pairwise similarities, so an orthogonal rotation of features costs nothing.
    assert similarity_regularization(f @ q, f).item() == pytest.approx(0.0, abs=1e-4)


def test_l2sp_value_and_gradient() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    w0 = torch.tensor([0.0, 0.0])
    head = torch.tensor([3.0], requires_grad=True)
    loss = l2sp_penalty([w], [w0], [head], alpha=0.1, beta=0.01)
    assert loss.item() == pytest.approx(0.1 / 2 * 5 + 0.01 / 2 * 9)
    loss.backward()
    assert torch.allclose(w.grad, 0.1 * w.detach())
    assert torch.allclose(head.grad, 0.01 * head.detach())


def test_task_loss_is_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0]])
    assert task_loss(logits, torch.tensor([0])).item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1)))


def test_task_loss_averages_the_cross_entropy_over_the_batch() -> None:
    # Eq. 3 on two images: −log softmax(2, 0)₀ = log(1 + e⁻²) and −log softmax(0, 0)₁ = log 2, averaged.
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    expected = (math.log1p(math.exp(-2)) + math.log(2)) / 2
    assert task_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(expected, abs=1e-15)


def test_sim_reg_hand_computed_on_a_three_image_batch() -> None:
    # S = f fᵀ = [[1,0,1],[0,4,2],[1,2,2]], S* = f* f*ᵀ = [[1,1,1],[1,1,1],[1,1,1]] (every f* = e₁), so
    # S − S* = [[0,-1,0],[-1,3,1],[0,1,1]]: ‖·‖_F = √14, Σ|·| = 8, mean of squares = 14/9.
    f = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    f_star = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert torch.equal(similarity_matrix(f), torch.tensor([[1.0, 0, 1], [0, 4, 2], [1, 2, 2]], dtype=torch.float64))
    assert similarity_regularization(f, f_star, "fro").item() == math.sqrt(14)
    assert similarity_regularization(f, f_star, "l1").item() == 8.0
    assert similarity_regularization(f, f_star, "mse").item() == pytest.approx(14 / 9, abs=1e-15)


def _model() -> tuple[Classifier, torch.nn.Module]:
    torch.manual_seed(0)
    enc = build_encoder("resnet10", small_stem=True, width=4)
    return Classifier(enc, 3), enc


def test_sim_objective_with_zero_weight_equals_none() -> None:
    model, enc = _model()
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    l_none, logits_none, _ = build_objective("none", model, enc)(x, y)
    l_sim, logits_sim, stats = build_objective("sim", model, enc, weight=0.0)(x, y)
    assert torch.equal(logits_none, logits_sim)
    assert l_none.item() == l_sim.item()
    # before any update the tuned encoder equals the frozen one except for BN mode (train vs eval)
    assert stats["sim"] >= 0.0


def test_sim_objective_is_task_loss_plus_weighted_eq4() -> None:
    model, enc = _model()
    frozen = frozen_copy(enc).eval()
    x, y = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    loss, logits, stats = build_objective("sim", model, enc, weight=0.5)(x, y)
    _, feats = model(x, return_features=True)
    reg = similarity_regularization(feats.float(), frozen(x).float(), scale="batch")  # the defaults: eval f*, per entry
    assert torch.equal(stats["sim"], reg.detach())
    assert torch.equal(stats["task"], task_loss(logits, y).detach())
    assert torch.equal(loss.detach(), (task_loss(logits, y) + 0.5 * reg).detach())


def test_l2sp_objective_is_head_penalty_at_start() -> None:
    model, enc = _model()
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    loss, logits, stats = build_objective("l2sp", model, enc, alpha=1.0, beta=2.0)(x, y)
    expected = (model.head.weight ** 2).sum().item()  # β/2·‖w‖² with β = 2; encoder term is 0 at start
    assert stats["l2sp"] == pytest.approx(expected, rel=1e-5)
    assert loss.item() == pytest.approx(task_loss(logits, y).item() + expected, rel=1e-5)


def test_sim_step_keeps_similarities_closer_than_plain_step() -> None:
    """Eq. 4's purpose, on one small SGD step from the same start: the regularized step leaves the in-batch
    similarities nearer the frozen encoder's than the unregularized step does."""
    x, y = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(3)), torch.arange(16) % 3
    dist = {}
    for name, values in (("none", {}), ("sim", {"weight": 1.0})):
        model, enc = _model()
        model.train()
        frozen = frozen_copy(enc)  # taken before the step: `enc` is the encoder being tuned
        objective = build_objective(name, model, enc, **values)
        loss, _, _ = objective(x, y)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                if p.grad is not None:
                    p.sub_(1e-3 * p.grad)
            dist[name] = similarity_regularization(model.encoder(x), frozen(x)).item()
    assert dist["sim"] < dist["none"]


@pytest.mark.parametrize("which", ["weights", "all"])
def test_l2sp_penalty_on_a_network_counts_exactly_the_chosen_parameters(which: str) -> None:
    """Every encoder parameter moved by 0.1 from its start: α/2 · 0.01 · (elements of the chosen tensors) +
    β/2 · ‖head‖² — conv weights only for "weights" (Li et al.'s released code), BN γ/β too for "all", whose β
    term also covers the head's bias."""
    model, enc = _model()
    start = copy.deepcopy(enc)  # the pretrained encoder; the model's own copy moves away from it
    with torch.no_grad():
        model.head.bias.fill_(0.5)
        for p in model.encoder.parameters():
            p.add_(0.1)
    alpha, beta = 0.3, 0.02
    chosen = [p for p in model.encoder.parameters() if which == "all" or p.ndim > 1]
    head = [model.head.weight, model.head.bias] if which == "all" else [model.head.weight]
    assert len(chosen) < len(list(model.encoder.parameters())) or which == "all"
    expected = (alpha / 2 * 0.01 * sum(p.numel() for p in chosen)
                + beta / 2 * sum(float((p.detach().double() ** 2).sum()) for p in head))
    _, _, stats = build_objective("l2sp", model, start, alpha=alpha, beta=beta, params=which)(
        torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))
    assert float(stats["l2sp"]) == pytest.approx(expected, rel=1e-5)


def test_only_l2sp_claims_parameters_from_weight_decay() -> None:
    model, _ = _model()
    assert regularized_parameters("none", model) == [] and regularized_parameters("sim", model, weight=1.0) == []
    claimed = regularized_parameters("l2sp", model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in claimed) == sorted(
        n for n, p in model.named_parameters() if p.ndim > 1)  # conv kernels and the head's weight matrix
