"""L2 PGD: stays in the ε-ball and [0, 1], matches a hand-computed step, and is monotone in ε."""

import itertools

import pytest
import torch
from torch import nn

from urrlkit.attacks import pgd_l2, project_l2, robust_accuracy
from urrlkit.errors import UrrlError


def _linear_setup(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(4, 192, generator=g) * 0.1)
        model[1].bias.zero_()
    x = torch.rand(n, 3, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)  # clean accuracy 100 %
    return model.eval(), x, y


@pytest.mark.parametrize("random_start", [False, True])
@pytest.mark.parametrize("use_best", [False, True])
def test_stays_in_ball_and_box(random_start, use_best):
    model, x, y = _linear_setup()
    for eps in (0.1, 0.5, 2.0):
        adv = pgd_l2(
            model,
            x,
            y,
            eps=eps,
            steps=7,
            random_start=random_start,
            use_best=use_best,
            generator=torch.Generator().manual_seed(1),
        )
        assert (adv - x).flatten(1).norm(dim=1).max() <= eps * (1 + 1e-5)
        assert adv.min() >= 0 and adv.max() <= 1


def test_one_step_matches_hand_computation():
    model, x, y = _linear_setup(n=8)
    eps = 0.3
    xr = x.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(xr), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, xr)
    step = x + eps * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    expect = torch.clamp(step, 0, 1)  # ‖step − x‖ = eps exactly: the renorm is a no-op, then clamp
    adv = pgd_l2(model, x, y, eps=eps, steps=1, step_size=eps, use_best=False)
    assert torch.allclose(adv, expect, atol=1e-6)


def test_monotone_in_eps_and_default_step_size():
    model, x, y = _linear_setup(n=128)
    accs = [
        robust_accuracy(model, x, y, eps=e, steps=10)["robust_top1"] for e in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)
    ]
    assert accs[0] == 100.0
    assert all(a >= b for a, b in itertools.pairwise(accs)), accs
    assert accs[-1] < 50.0
    r = robust_accuracy(model, x, y, eps=0.5, steps=20)
    assert r["step_size"] == pytest.approx(2.5 * 0.5 / 20)
    assert {"robust_top1", "clean_top1", "eps", "steps", "step_size", "random_start", "use_best", "n"} <= set(
        r
    )


def test_use_best_never_worse_than_last_iterate():
    model, x, y = _linear_setup(n=64)
    crit = nn.CrossEntropyLoss(reduction="none")
    last = pgd_l2(model, x, y, eps=0.5, steps=5, step_size=0.5, use_best=False)
    best = pgd_l2(model, x, y, eps=0.5, steps=5, step_size=0.5, use_best=True)
    with torch.no_grad():
        assert (crit(model(best), y) >= crit(model(last), y) - 1e-6).all()


def test_eps_zero_and_bad_args():
    model, x, y = _linear_setup(n=4)
    assert torch.equal(pgd_l2(model, x, y, eps=0.0), x)
    with pytest.raises(UrrlError):
        pgd_l2(model, x, y, eps=-1)
    p = project_l2(x + 1.0, x, 0.25)
    assert (p - x).flatten(1).norm(dim=1).max() <= 0.25 + 1e-6
