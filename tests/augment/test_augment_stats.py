"""Statistical checks on ≥ 10,000 draws: family frequencies (paper Eq. 2), AugMix chain structure and
levels (google-research/augmix augmentations.py), MoCo v2 rates (facebookresearch/moco main_moco.py).
Bounds are 5 binomial standard errors."""

from __future__ import annotations

import math

import pytest
import torch

from urrlkit.augment import augmix, build_sampler
from urrlkit.augment.families import MocoV2
from urrlkit.config import FamilySpec
from urrlkit.pretext.methods.moco_v2 import MoCoV2

N = 20_000


def assert_rate(observed: torch.Tensor, p: float, n: int | None = None) -> None:
    n = n or observed.numel()
    rate = observed.float().mean().item()
    se = math.sqrt(max(p * (1 - p), 1e-12) / n)
    assert abs(rate - p) <= 5 * se + 1e-12, f"rate {rate:.4f} vs {p} (n={n})"


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_family_frequencies_match_weights(p: float) -> None:
    sampler = build_sampler(MoCoV2(p=p).family_weights(), image_size=8, views=2)
    assert sampler.names == ["augmix_allop", "moco_v2"]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5_000, 3, 8, 8), dtype=torch.uint8, generator=g)
    _, fam = sampler(x, g)  # 10,000 family draws through the real call
    assert fam.shape == (2, 5_000)
    assert_rate(fam == 0, p)
    assert_rate(sampler.draw_families(N, g) == 0, p)
    # The views are drawn independently: the family of view 1 says nothing about view 2.
    if p == 0.5:
        assert_rate(fam[0] == fam[1], 0.5)


def test_three_families_weights() -> None:
    specs = [FamilySpec(name="moco_v2", weight=2), FamilySpec(name="augmix", weight=1),
             FamilySpec(name="identity", weight=1)]
    fam = build_sampler(specs, image_size=8).draw_families(N, torch.Generator().manual_seed(1))
    for k, p in enumerate([0.5, 0.25, 0.25]):
        assert_rate(fam == k, p)


@pytest.mark.parametrize("severity", [1.0, 3.0])
def test_augmix_depth_width_levels(severity: float) -> None:
    g = torch.Generator().manual_seed(2)
    n = N // 3
    p = augmix.sample_params(n, 13, g, severity=severity)
    assert p.width == 3 and p.depth.numel() == 3 * n
    for d in (1, 2, 3):  # depth ~ U{1, 2, 3} per chain
        assert_rate(p.depth == d, 1 / 3)
    assert set(p.depth.unique().tolist()) == {1, 2, 3}
    used = p.depth.unsqueeze(0) > torch.arange(3).unsqueeze(1)
    ops = p.op[used]
    for k in range(13):  # each op equally likely
        assert_rate(ops == k, 1 / 13)
    levels = p.level[used]
    assert levels.min() >= 0.1 and levels.max() <= severity
    assert abs(levels.mean().item() - (0.1 + severity) / 2) < 0.01 * severity
    # a fresh level per op application: consecutive steps of one chain are uncorrelated
    both = p.depth >= 2
    corr = torch.corrcoef(torch.stack([p.level[0, both], p.level[1, both]]))[0, 1]
    assert abs(corr) < 0.05
    assert_rate(p.sign[used] > 0, 0.5)
    # w ~ Dirichlet(1, 1, 1): on the simplex, marginal Beta(1, 2) (mean 1/3, variance 1/18)
    torch.testing.assert_close(p.weights.sum(1), torch.ones(n))
    assert (p.weights >= 0).all()
    assert abs(p.weights.mean().item() - 1 / 3) < 0.01
    assert abs(p.weights[:, 0].var().item() - 1 / 18) < 0.005
    # m ~ Beta(1, 1) = U(0, 1)
    assert abs(p.m.mean().item() - 0.5) < 0.02 and abs(p.m.var().item() - 1 / 12) < 0.005


def test_augmix_fixed_depth() -> None:
    p = augmix.sample_params(100, 9, torch.Generator().manual_seed(3), depth=2, width=5)
    assert p.width == 5 and (p.depth == 2).all() and p.op.shape == (2, 500)


def test_moco_application_rates() -> None:
    fam = MocoV2(32)
    g = torch.Generator().manual_seed(4)
    p = fam.sample_params(N, 40, 40, g)
    assert_rate(p.jitter, 0.8)
    assert_rate(p.gray, 0.2)
    assert_rate(p.blur, 0.5)
    assert_rate(p.flip, 0.5)
    assert p.sigma.min() >= 0.1 and p.sigma.max() <= 2.0
    assert abs(p.sigma.mean().item() - 1.05) < 0.02
    f = p.factors
    assert f[:, :3].min() >= 0.6 and f[:, :3].max() <= 1.4 and f[:, 3].abs().max() <= 0.1
    # every order of the four jitter ops occurs, about equally often (24 permutations)
    codes = (p.order * torch.tensor([64, 16, 4, 1])).sum(1)
    assert codes.unique().numel() == 24
    # crops: inside the 40-px input, area fraction in [0.2, 1] up to rounding, aspect ratio in [3/4, 4/3]
    assert (p.top >= 0).all() and (p.left >= 0).all()
    assert (p.top + p.height <= 40).all() and (p.left + p.width <= 40).all()
    area = (p.height * p.width).float() / 1600
    assert area.min() > 0.18 and area.max() <= 1.0
    ratio = p.width.float() / p.height.float()
    assert ratio.min() > 0.7 and ratio.max() < 1.43


def test_moco_output_rates() -> None:
    """Rates read off the augmented pixels themselves: exactly-grey outputs are the grayscale draws."""
    fam = MocoV2(8)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(10_000, 3, 8, 8, generator=g)
    out = fam(x, g)
    grey = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert_rate(grey, 0.2)


def test_two_copies_get_different_augmentations() -> None:
    from urrlkit.data import DataRequest, build

    img = build("cifar10-sample", DataRequest(None, "train", 32)).images[:1]
    x = img.expand(16, -1, -1, -1)
    singles = [[FamilySpec(name=n)] for n in ("moco_v2", "augmix", "augmix_allop", "augmix_moco")]
    for specs in [*singles, MoCoV2(p=0.5).family_weights()]:
        views, _ = build_sampler(specs, 32, views=2)(x, torch.Generator().manual_seed(6))
        out = torch.cat(views).flatten(1)
        dist = torch.cdist(out, out)
        off = dist[~torch.eye(32, dtype=torch.bool)]
        assert (off > 1e-3).all(), f"{specs[0].name}: two copies received the same augmentation"
