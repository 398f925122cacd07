"""SimCLR's and BYOL's own augmentation families (`simclr`, `byol`) and the solarization they brought to the MoCo v2
pipeline: settings as the references give them (google-research/simclr data_util.py, deepmind-research
byol/utils/augmentations.py), draw rates (5 binomial standard errors over 20,000 draws), each view equal to the
torchvision functional composition of its drawn parameters, and MoCo v2's views unchanged by the new option."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from urrlkit.augment import build_sampler, color, geometry, rand
from urrlkit.augment.families import MocoV2, byol, moco_v2, simclr, solarize
from urrlkit.augment.multiview import build_view_sampler
from urrlkit.catalog import families as checks
from urrlkit.config import FamilySpec, validate_dict
from urrlkit.errors import RecipeError
from urrlkit.views import ViewGroup

N = 20_000
JITTER_FNS = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]


def assert_rate(observed: torch.Tensor, p: float) -> None:
    n = observed.numel()
    rate = observed.float().mean().item()
    assert abs(rate - p) <= 5 * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12, f"rate {rate:.4f} vs {p} (n={n})"


# ------------------------------------------------------------------------- MoCo v2 is left as it was


def _digest(t: torch.Tensor) -> tuple[float, float, float]:
    d = t.double()
    return d.sum().item(), d.square().sum().item(), (d * torch.arange(d.numel(), dtype=torch.float64).view_as(d)
                                                      ).sum().item()


def test_moco_v2_views_are_unchanged_by_the_solarize_option() -> None:
    """The views of MoCo v2 (solarize_p = 0) against the output of the code before solarization existed (commit
    bfc64ec), recorded with these seeds; and the generator is left where the old draws left it."""
    x = torch.rand(32, 3, 24, 24, generator=torch.Generator().manual_seed(123))
    fam = MocoV2(16)
    g = torch.Generator().manual_seed(7)
    out = fam(x, g)
    phot = fam.photometric(x[:, :, :16, :16], torch.Generator().manual_seed(8))
    before = [(12400.93379439923, 6916.023174622257, 153089700.20071054),
              (12206.173109666772, 7259.240499479235, 144917227.43230549)]
    for t, ref in zip((out, phot), before, strict=True):
        assert _digest(t) == pytest.approx(ref, rel=1e-7)  # bit-identical here; 1e-7 leaves other CPUs' rounding
    assert torch.rand(1, generator=g).item() == pytest.approx(0.3534896969795227, abs=0)


def test_moco_v2_draws_exactly_the_old_sequence() -> None:
    """solarize_p = 0 draws nothing: MocoV2's parameters are the old draw sequence, from the same generator."""
    n = 64
    fam = moco_v2(16)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    p = fam.sample_params(n, 24, 24, g1)
    top, left, h, w = geometry.rrc_params(n, 24, 24, (0.2, 1.0), (3 / 4, 4 / 3), g2)
    flip = rand.bernoulli(n, 0.5, g2)
    jitter = rand.bernoulli(n, 0.8, g2)
    factors, order = color.jitter_params(n, g2, 0.4, 0.4, 0.4, 0.1)
    gray, blur = rand.bernoulli(n, 0.2, g2), rand.bernoulli(n, 0.5, g2)
    sigma = rand.uniform(n, 0.1, 2.0, g2)
    for a, b in zip((p.top, p.left, p.height, p.width, p.flip, p.jitter, p.factors, p.order, p.gray, p.blur, p.sigma),
                    (top, left, h, w, flip, jitter, factors, order, gray, blur, sigma), strict=True):
        assert torch.equal(a, b)
    assert p.solarize is None and torch.equal(g1.get_state(), g2.get_state())
    assert fam.kernel == color.blur_kernel_size(2.0) == 13  # MoCo v2's kernel stays ±3σ_max


# ------------------------------------------------------------------------------------ the settings


def test_solarize_matches_torchvision_and_byol() -> None:
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, :3] = torch.tensor([0.5, 0.5 - 1e-7, 1.0])  # on and around the threshold
    out = solarize(x, 0.5)
    assert torch.equal(out, TF.solarize(x, 0.5))  # torchvision: x ≥ threshold → 1 − x
    assert torch.equal(out, torch.where(x < 0.5, x, 1.0 - x))  # byol _solarize_single_image
    assert out[0, 0, 0, :3].tolist() == pytest.approx([0.5, 0.5 - 1e-7, 0.0])


@pytest.mark.parametrize(("size", "taps"), [(32, 3), (64, 7), (96, 9), (224, 23), (19, 1), (20, 3)])
def test_reference_blur_kernel(size: int, taps: int) -> None:
    # SimCLR: kernel_size = height // 10, radius = int(kernel_size / 2); BYOL: size / 10., int(k / 2).
    simclr_taps = 2 * int((size // 10) / 2) + 1
    byol_taps = 2 * int((size / 10.0) / 2) + 1
    assert checks.reference_blur_kernel(size) == simclr_taps == byol_taps == taps


def test_simclr_settings_follow_the_image_size() -> None:
    big, small = simclr(224), simclr(32)
    assert big.jitter == pytest.approx((0.8, 0.8, 0.8, 0.2)) and big.blur_p == 0.5 and big.kernel == 23
    assert small.jitter == pytest.approx((0.4, 0.4, 0.4, 0.1)) and small.blur_p == 0.0  # CIFAR: s 0.5, no blur
    for fam in (big, small):
        assert fam.scale == (0.08, 1.0) and fam.jitter_p == 0.8 and fam.grayscale_p == 0.2
        assert fam.blur_sigma == (0.1, 2.0) and fam.solarize_p == 0.0 and fam.flip
    custom = simclr(32, strength=1.0, blur_p=0.5)
    assert custom.jitter == pytest.approx((0.8, 0.8, 0.8, 0.2)) and custom.blur_p == 0.5 and custom.kernel == 3


def test_byol_settings_are_view_one_of_table_6() -> None:
    fam = byol(224)
    assert fam.scale == (0.08, 1.0) and fam.jitter == (0.4, 0.4, 0.2, 0.1) and fam.jitter_p == 0.8
    assert fam.grayscale_p == 0.2 and fam.blur_p == 1.0 and fam.solarize_p == 0.0 and fam.kernel == 23
    assert fam.solarize_threshold == 0.5 and fam.blur_sigma == (0.1, 2.0)
    two = byol(224, blur_p=0.1, solarize_p=0.2)
    assert two.blur_p == 0.1 and two.solarize_p == 0.2


# ----------------------------------------------------------------------------------------- the draws


def test_byol_draw_rates() -> None:
    g = torch.Generator().manual_seed(4)
    p = byol(32, blur_p=0.1, solarize_p=0.2).sample_params(N, 40, 40, g)
    assert p.solarize is not None
    assert_rate(p.jitter, 0.8)
    assert_rate(p.gray, 0.2)
    assert_rate(p.blur, 0.1)
    assert_rate(p.solarize, 0.2)
    assert_rate(p.flip, 0.5)
    f = p.factors
    assert f[:, :2].min() >= 0.6 and f[:, :2].max() <= 1.4  # brightness, contrast ±0.4
    assert f[:, 2].min() >= 0.8 and f[:, 2].max() <= 1.2 and f[:, 3].abs().max() <= 0.1  # saturation ±0.2, hue
    assert abs(p.sigma.mean().item() - 1.05) < 0.02
    area = (p.height * p.width).float() / 1600
    assert area.min() < 0.1 and area.min() > 0.07  # the 0.08 lower scale (MoCo v2's is 0.2)


def test_simclr_draw_rates() -> None:
    g = torch.Generator().manual_seed(9)
    p = simclr(224).sample_params(N, 256, 256, g)
    assert_rate(p.jitter, 0.8)
    assert_rate(p.gray, 0.2)
    assert_rate(p.blur, 0.5)
    assert p.factors[:, :3].min() >= 0.2 and p.factors[:, :3].max() <= 1.8 and p.factors[:, 3].abs().max() <= 0.2
    assert p.factors[:, 0].min() < 0.25 and p.factors[:, 0].max() > 1.75  # strength 1: the full 1 ± 0.8
    assert p.solarize is None


def test_solarized_views_read_off_the_pixels() -> None:
    """Solarization alone (every other op off): each view is either the crop or its solarization, about
    solarize_p of them the latter."""
    fam = byol(8, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.3, flip=False, scale_min=1.0)
    x = torch.rand(N, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    out = fam(x, torch.Generator().manual_seed(3))
    solar = (out - solarize(x)).abs().flatten(1).amax(1) < 1e-6
    plain = (out - x).abs().flatten(1).amax(1) < 1e-6
    assert (solar ^ plain).all()  # one or the other, never both (a random image has pixels above 0.5)
    assert_rate(solar, 0.3)


@pytest.mark.parametrize("name", ["simclr", "byol"])
def test_views_match_the_torchvision_composition(name: str) -> None:
    """Every view equals torchvision's functional ops applied with the parameters it drew: resized_crop →
    (jitter in the drawn order) → grayscale → gaussian_blur with the reference's taps → solarize → flip."""
    size, n = 64, 24
    fam = simclr(size, blur_p=0.5) if name == "simclr" else byol(size, blur_p=0.5, solarize_p=0.5)
    x = torch.rand(n, 3, 80, 80, generator=torch.Generator().manual_seed(1))
    p = fam.sample_params(n, 80, 80, torch.Generator().manual_seed(11))
    out = fam.apply(x, p)
    k = fam.kernel
    assert k == 7
    for i in range(n):
        ref = TF.resized_crop(x[i], int(p.top[i]), int(p.left[i]), int(p.height[i]), int(p.width[i]),
                              [size, size], antialias=False)
        if p.jitter[i]:
            for op in p.order[i].tolist():
                ref = JITTER_FNS[op](ref, float(p.factors[i, op]))
        if p.gray[i]:
            ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
        if p.blur[i]:
            s = float(p.sigma[i])
            ref = TF.gaussian_blur(ref, [k, k], [s, s])
        ref = ref.clamp(0, 1)
        if p.solarize is not None and p.solarize[i]:
            ref = TF.solarize(ref, 0.5)
        if p.flip[i]:
            ref = TF.horizontal_flip(ref)
        torch.testing.assert_close(out[i], ref, atol=2e-4, rtol=0)
    assert (p.solarize is not None) == (name == "byol")


def test_byol_views_per_group_take_their_own_probabilities() -> None:
    """BYOL's asymmetric T and T′ as two view groups over one family list: each group's byol family is built
    with that view's blur and solarize probabilities; the other family (AugMix) is the same in both."""
    specs = [FamilySpec(name="augmix_allop", weight=0.5), FamilySpec(name="byol", weight=0.5)]
    groups = [ViewGroup(1, params={"byol": {"blur_p": 1.0, "solarize_p": 0.0}}, name="view1"),
              ViewGroup(1, params={"byol": {"blur_p": 0.1, "solarize_p": 0.2}}, name="view2")]
    sampler = build_view_sampler(specs, 16, groups)
    one, two = (s.families[1] for s in sampler.samplers)
    assert isinstance(one, MocoV2) and isinstance(two, MocoV2)
    assert (one.blur_p, one.solarize_p, two.blur_p, two.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    views, fam = sampler(torch.randint(0, 256, (8, 3, 20, 20), dtype=torch.uint8), torch.Generator().manual_seed(0))
    assert len(views) == 2 and all(v.shape == (8, 3, 16, 16) for v in views) and fam.shape == (2, 8)


# ----------------------------------------------------------------------------------- recipe checks


@pytest.mark.parametrize(("name", "params", "field"), [
    ("simclr", {"strength": 3.0}, "strength"), ("simclr", {"strength": -0.1}, "strength"),
    ("simclr", {"blur_p": 1.5}, "blur_p"), ("simclr", {"scale_min": 0.0}, "scale_min"),
    ("simclr", {"blur_sigma_min": 3.0}, "blur_sigma_min"), ("byol", {"solarize_p": 1.2}, "solarize_p"),
    ("byol", {"solarize_threshold": 2.0}, "solarize_threshold"), ("byol", {"hue": 0.6}, "hue"),
    ("byol", {"blur_p": -0.5}, "blur_p"), ("byol", {"scale_max": 1.5}, "scale_max"),
])
def test_bad_parameters_are_one_line_errors_naming_the_field(name: str, params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        getattr(checks, name)(32, **params)
    with pytest.raises(ValueError, match=rf"^{field}\b"):
        (simclr if name == "simclr" else byol)(32, **params)  # the factory says the same
    recipe = {"data": {"image_size": 32}, "pretext": {"families": [{"name": name, "params": params}]}}
    with pytest.raises(RecipeError, match=rf"pretext\.families\[0\]\.params\.{field}\b.*family '{name}'") as err:
        validate_dict(recipe)
    assert "\n" not in str(err.value)


def test_the_families_mix_with_augmix_by_p() -> None:
    specs = [FamilySpec(name="augmix_allop", weight=0.5), FamilySpec(name="simclr", weight=0.5)]
    sampler = build_sampler(specs, 32, views=2)
    assert_rate(sampler.draw_families(N, torch.Generator().manual_seed(1)) == 1, 0.5)
    views, fam = sampler(torch.randint(0, 256, (64, 3, 36, 36), dtype=torch.uint8), torch.Generator().manual_seed(2))
    assert set(fam.flatten().tolist()) == {0, 1}
    assert all(v.shape == (64, 3, 32, 32) and float(v.min()) >= 0 and float(v.max()) <= 1 for v in views)
