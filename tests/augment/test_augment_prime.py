"""PRIME (urrlkit/augment/prime.py) against amodas/PRIME-augmentations: each primitive with fixed parameters
equals a per-image re-statement of the reference formula (diffeomorphism.py ``scalar_field`` / ``deform`` /
``remap``, rand_filter.py, color_jitter.py ``random_smooth_color``) on real images; zero strength is the
identity; the draws follow the reference distributions; the family runs in Eq. 2's weighted list."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from urrlkit.augment import augmix, build_family, build_sampler, prime
from urrlkit.cli import app
from urrlkit.config import FamilySpec, load
from urrlkit.data import DataRequest, build

ROOT = Path(__file__).resolve().parents[2]
N = 2_000


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Real images in [0, 1]: CIFAR-10 from /work/shared/data when present, else the bundled sample."""
    shared = ROOT.parent / "shared" / "data" / "cifar10" / "train.npz"
    if shared.exists():
        import numpy as np

        x = torch.from_numpy(np.load(shared)["images"][:16]).permute(0, 3, 1, 2)
    else:
        x = build("cifar10-sample", DataRequest(None, "train", 32)).images[:16]
    return (x.float() / 255).contiguous()


# ------------------------------------------------------------------------ per-image reference statements


def ref_scalar_field(n: int, cut: int, c: torch.Tensor) -> torch.Tensor:
    """diffeomorphism.py scalar_field with the coefficients c (cut, cut) given: einsum('ij,xi,yj->yx')."""
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    k = torch.arange(1, cut + 1, dtype=torch.float64)
    i, j = torch.meshgrid(k, k, indexing="ij")
    r = (i.pow(2) + j.pow(2)).sqrt()
    e = (r < cut + 0.5) / r
    s = torch.sin(math.pi * x[:, None] * k[None, :])
    return torch.einsum("ij,xi,yj->yx", c.double() * e, s, s)


def ref_remap(a: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """diffeomorphism.py remap (linear): floor/ceil corners of the clamped source point."""
    n, m = a.shape[-2:]
    y, x = torch.meshgrid(torch.arange(n, dtype=dx.dtype), torch.arange(m, dtype=dx.dtype), indexing="ij")
    xn, yn = (x - dx).clamp(0, m - 1), (y - dy).clamp(0, n - 1)
    xf, yf, xc, yc = xn.floor().long(), yn.floor().long(), xn.ceil().long(), yn.ceil().long()
    xv, yv = xn - xf, yn - yf
    return ((1 - yv) * (1 - xv) * a[..., yf, xf] + (1 - yv) * xv * a[..., yf, xc] + yv * (1 - xv) * a[..., yc, xf]
            + yv * xv * a[..., yc, xc])


def test_diffeo_equals_reference_deform(images: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(0)
    b, n, m = 6, 32, 100
    cut = torch.tensor([2.0, 5.0, 17.0, 40.0, 99.0, 100.0])
    t1, t2 = prime.temperature_range(n, cut)
    temp = t1 + torch.rand(b, generator=g) * (t2 - t1)
    cu, cv = torch.randn(b, m, m, generator=g), torch.randn(b, m, m, generator=g)
    ours = prime.diffeo(images[:b], cut, temp, cu, cv)
    for i in range(b):
        k = int(cut[i])
        dx = temp[i].double().sqrt() * ref_scalar_field(n, k, cu[i, :k, :k]) * n
        dy = temp[i].double().sqrt() * ref_scalar_field(n, k, cv[i, :k, :k]) * n
        ref = ref_remap(images[i].double(), dx, dy).float()
        torch.testing.assert_close(ours[i], ref, atol=2e-5, rtol=0)
    assert (ours - images[:b]).abs().mean() > 1e-3  # it did move pixels


def test_diffeo_zero_temperature_is_identity(images: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(1)
    cut = torch.full((16,), 50.0)
    out = prime.diffeo(images, cut, torch.zeros(16), torch.randn(16, 50, 50, generator=g),
                       torch.randn(16, 50, 50, generator=g))
    torch.testing.assert_close(out, images, atol=2e-6, rtol=0)  # grid_sample's coordinate rounding


def test_diffeo_displacement_bounded_by_its_strength() -> None:
    """|dx| = √T·n·|u| ≤ √T·n·Σ_ij |c_ij·e_ij| (|sin| ≤ 1), and T never exceeds the no-overhang bound."""
    g = torch.Generator().manual_seed(2)
    n = 32
    cut, temp = prime.diffeo_params(N, n, g, 2, 100, 1.0)
    t1, t2 = prime.temperature_range(n, cut)
    assert (cut >= 2).all() and (cut <= 101).all() and (cut == cut.floor()).all()  # 101: Beta(½, ½) = 1.0
    assert (temp >= t1 * (1 - 1e-6)).all() and (temp <= torch.maximum(t1, t2) * (1 + 1e-6)).all()
    c = torch.randn(64, 101, 101, generator=g)
    u = prime.scalar_fields(n, cut[:64], c)
    _, r = prime._modes(n, 101, torch.device("cpu"))
    e = torch.where(r < cut[:64].view(-1, 1, 1) + 0.5, 1 / r, torch.zeros_like(r))
    bound = (c * e).abs().sum(dim=(1, 2))
    assert (u.abs().amax(dim=(1, 2)) <= bound * (1 + 1e-5)).all()


def test_diffeo_draws_follow_the_reference() -> None:
    """Beta(½, ½) (arcsine): mean ½, variance ⅛; cut_max' ~ U{3 … 100} then cut = int(2 + B·(cut_max' − 1)):
    E[cut] = 2 + ½·(E[cut_max'] − 1) − ½ (the int() floor of a symmetric B loses ½ on average)."""
    g = torch.Generator().manual_seed(3)
    a = prime.arcsine(50_000, g)
    assert abs(a.mean().item() - 0.5) < 0.005 and abs(a.var().item() - 1 / 8) < 0.003
    cut, _ = prime.diffeo_params(50_000, 32, g, 2, 100, 1.0)
    assert abs(cut.mean().item() - (2 + 0.5 * (51.5 - 1) - 0.5)) < 0.5
    assert cut.min() == 2 and cut.max() >= 98


def test_diffeo_writes_every_image_at_the_largest_cut(images: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Beta(½, ½) behind the cut rounds to exactly 1.0 in float32 for the top 1.7e-4 of torch.rand's values
    (sin(π/2·u) rounds to 1 for u ≥ 1 − 1.7e-4), so cut = int(1.0·(cut_max' + 1 − cut_min) + cut_min) =
    cut_max' + 1 — up to cut_max + 1, a cut the reference's Diffeo renders like any other. Forced there (rand at
    its largest value, randint at its top), every image must come out as the reference's deform at cut 101 and
    T = max(T1, T2), with the coefficients the op drew; buffers start as NaN so an image left out shows."""
    real_rand, real_randint, real_randn, real_empty_like = torch.rand, torch.randint, torch.randn, torch.empty_like
    drawn: list[torch.Tensor] = []

    def randn(*args: Any, **kwargs: Any) -> torch.Tensor:
        drawn.append(real_randn(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(torch, "rand", lambda *a, **k: real_rand(*a, **k).fill_(1 - 2**-24))
    monkeypatch.setattr(torch, "randint", lambda low, high, size, **k: real_randint(low, high, size, **k)
                        .fill_(high - 1))
    monkeypatch.setattr(torch, "randn", randn)
    monkeypatch.setattr(torch, "empty_like", lambda *a, **k: real_empty_like(*a, **k).fill_(float("nan")))
    fam = prime.prime(32)
    b, n = 8, 32
    x = images[:b]
    cut, temp = prime.diffeo_params(b, n, torch.Generator().manual_seed(30), 2, 100, 1.0)
    assert (cut == 101).all()
    t1, t2 = prime.temperature_range(n, cut)
    torch.testing.assert_close(temp, torch.maximum(t1, t2))
    drawn.clear()
    out = fam._diffeo(x, torch.zeros(b), torch.ones(b), torch.Generator().manual_seed(31))
    monkeypatch.undo()
    assert torch.isfinite(out).all(), "images left out of the grouped apply"
    coeffs = [c for c in drawn if c.dim() == 3 and c.shape[-1] >= 101]
    assert len(coeffs) == 2 and all(c.shape[0] == b for c in coeffs)
    cu, cv = coeffs
    for i in range(b):
        dx = temp[i].double().sqrt() * ref_scalar_field(n, 101, cu[i, :101, :101]) * n
        dy = temp[i].double().sqrt() * ref_scalar_field(n, 101, cv[i, :101, :101]) * n
        torch.testing.assert_close(out[i], ref_remap(x[i].double(), dx, dy).float(), atol=2e-5, rtol=0)


def test_spectral_filter_equals_reference_conv(images: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(4)
    sigma = torch.rand(16, generator=g) * 4
    kernels = prime.filter_kernels(sigma, torch.randn(16, 3, 3, generator=g))
    ours = prime.spectral_filter(images, kernels)
    for i in range(16):  # rand_filter.py: one kernel per image, shared by its channels, padding 'same'
        ref = F.conv2d(images[i].unsqueeze(1), kernels[i].view(1, 1, 3, 3), padding="same").squeeze(1)
        torch.testing.assert_close(ours[i], ref.clamp(0, 1), atol=1e-6, rtol=0)


def test_spectral_filter_zero_strength_is_identity(images: torch.Tensor) -> None:
    noise = torch.randn(16, 3, 3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(prime.spectral_filter(images, prime.filter_kernels(torch.zeros(16), noise)), images,
                               atol=0, rtol=0)


@pytest.mark.parametrize(("cut", "bandwidth"), [(100, None), (500, 20), (500, None)])
def test_smooth_color_equals_reference(images: torch.Tensor, cut: int, bandwidth: int | None) -> None:
    g = torch.Generator().manual_seed(6)
    k0, coeffs = prime.smooth_color_params(16, 3, g, cut, 0.05, bandwidth)
    ours = prime.smooth_color(images, k0, coeffs)
    for i in range(16):  # color_jitter.py: colors + einsum('bcf,bcnf->bcn', coeff, sin(colors·k·π)), clamped
        ref = {}
        for dtype in (torch.float64, torch.float32):  # float64 truth; the reference's own float32 arithmetic
            k = (k0[i] + torch.arange(coeffs.shape[-1])).to(dtype)
            colors = images[i].reshape(3, -1).to(dtype)
            freqs = torch.sin(colors[..., None] * k * math.pi)
            ref[dtype] = (torch.einsum("cf,cnf->cn", coeffs[i].to(dtype), freqs) + colors).clamp(0, 1).view(3, 32, 32)
        own_error = (ref[torch.float32].double() - ref[torch.float64]).abs().max().item()
        # as close to the exact value as the reference's float32 computation is (≈ 1e-5 at 100 frequencies)
        torch.testing.assert_close(ours[i].double(), ref[torch.float64], atol=max(2 * own_error, 1e-5), rtol=0)


def test_smooth_color_zero_strength_is_identity(images: torch.Tensor) -> None:
    k0, coeffs = prime.smooth_color_params(16, 3, torch.Generator().manual_seed(7), 100, 0.0, None)
    assert not coeffs.any()
    torch.testing.assert_close(prime.smooth_color(images, k0, coeffs), images, atol=0, rtol=0)


@pytest.mark.parametrize(("cut", "bandwidth"), [(100, None), (500, 20)])
def test_smooth_color_draws(cut: int, bandwidth: int | None) -> None:
    """cut' ~ U{1 … cut}, T ~ U(0, strength), c ~ √T·N(0, 1): E[c²] = strength / 2 over the kept coefficients;
    without a band exactly cut' coefficients per image are kept (mean (cut + 1) / 2); with one, k0 ~ U{1 … cut'}
    and min(band, cut' − k0 + 1) are kept."""
    g = torch.Generator().manual_seed(8)
    k0, coeffs = prime.smooth_color_params(N, 1, g, cut, 0.05, bandwidth)
    kept = coeffs[:, 0] != 0
    assert abs(coeffs[:, 0][kept].square().mean().item() - 0.025) < 0.0015
    counts = kept.sum(1).float()
    if bandwidth is None:
        assert (k0 == 1).all() and (kept == (torch.arange(cut) < counts.view(-1, 1))).all()  # a prefix
        se = math.sqrt((cut**2 - 1) / 12 / N)
        assert abs(counts.mean().item() - (cut + 1) / 2) < 5 * se
    else:
        assert k0.min() >= 1 and k0.max() <= cut and counts.max() <= bandwidth
        assert abs(k0.float().mean().item() - (cut + 3) / 4) < 0.05 * cut  # E[U{1 … U{1 … cut}}]


def test_mix_is_the_reference_formula(images: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(9)
    chains = torch.rand(3, 16, 3, 32, 32, generator=g)
    w = augmix.sample_params(16, 3, g).weights
    m = torch.rand(16, generator=g)
    ref = (1 - m.view(-1, 1, 1, 1)) * images + m.view(-1, 1, 1, 1) * torch.einsum("bm,mbchw->bchw", w, chains)
    torch.testing.assert_close(prime.mix(images, chains, w, m), ref.clamp(0, 1), atol=1e-6, rtol=0)


def test_primitive_choice_and_depth_frequencies() -> None:
    """The draws Prime.photometric makes (augmix.sample_params): each step one primitive uniformly (3 ops), depth
    U{1, 2, 3} (prime.py depth_combos), Dirichlet chain weights and a Beta(1, 1) mix (prime.py ``aug``)."""
    p = augmix.sample_params(N, 3, torch.Generator().manual_seed(10))
    used = p.depth.unsqueeze(0) > torch.arange(3).unsqueeze(1)
    ops, n = p.op[used], p.op[used].numel()
    for k in range(3):
        assert abs((ops == k).float().mean().item() - 1 / 3) < 5 * math.sqrt(2 / 9 / n)
    for d in (1, 2, 3):
        assert abs((p.depth == d).float().mean().item() - 1 / 3) < 5 * math.sqrt(2 / 9 / p.depth.numel())
    # ws ~ Dirichlet(1, 1, 1): marginals Beta(1, 2), mean 1/3, variance 1/18; m ~ Beta(1, 1): 1/2, 1/12
    torch.testing.assert_close(p.weights.sum(1), torch.ones(N))
    assert abs(p.weights.mean().item() - 1 / 3) < 5 * math.sqrt(1 / 18 / N)
    assert abs(p.weights[:, 1].var().item() - 1 / 18) < 0.1 / 18
    assert abs(p.m.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / N) and abs(p.m.var().item() - 1 / 12) < 0.1 / 12


# ----------------------------------------------------------------------------------------- the family


def test_family_defaults_follow_the_reference_configs() -> None:
    small, large = build_family("prime", 32), build_family("prime", 224)
    assert isinstance(small, prime.Prime) and isinstance(large, prime.Prime)
    assert small.op_names == ["diffeo", "color", "filter"]
    assert (small.diffeo_cut, small.color, small.filter) == ((2, 100), (100, 0.01, None), (3, 4.0))
    assert (large.diffeo_cut, large.color) == ((2, 500), (500, 0.05, 20))
    assert small.crop_spec.kind == "pad" and large.crop_spec.kind == "rrc" and large.crop_spec.scale == (0.08, 1.0)
    only = build_family("prime", 32, diffeo=False, filter=False, color_bandwidth=0)
    assert isinstance(only, prime.Prime) and only.op_names == ["color"] and only.color[2] is None


def test_family_views_are_deterministic_per_seed(images: torch.Tensor) -> None:
    fam = build_family("prime", 32)
    a = fam(images, torch.Generator().manual_seed(11))
    b = fam(images, torch.Generator().manual_seed(11))
    c = fam(images, torch.Generator().manual_seed(12))
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_only_the_identity_primitive_strengths_give_the_cropped_image(images: torch.Tensor) -> None:
    """Zero strengths everywhere (colour T = 0, filter σ = 0, diffeo α → T = T1 ≈ 0 is not zero: left out):
    every chain is the image, so the mix is the image."""
    fam = build_family("prime", 32, diffeo=False, color_strength=0.0, filter_sigma=0.0, crop="none", flip=False)
    torch.testing.assert_close(fam(images, torch.Generator().manual_seed(13)), images, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("params", "fragment"), [
    ({"diffeo": False, "color": False, "filter": False}, "needs at least one primitive"),
    ({"diffeo_cut_max": 2}, "diffeo_cut_max must be in [3, 2000]"),
    ({"color_strength": -0.1}, "color_strength must be in [0, ∞)"),
    ({"width": 0}, "width must be ≥ 1"),
    ({"crop": "centre"}, "crop must be one of"),
])
def test_bad_parameters_rejected(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        build_family("prime", 32, **params)


def test_bad_parameter_is_one_line_at_recipe_validation(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        f'extends = "{ROOT / "recipes/families/prime.toml"}"\n[pretext]\nfamilies = [\n'
        '  { name = "prime", weight = 0.5, params = { filter_sigma = -1.0 } },\n'
        '  { name = "moco_v2", weight = 0.5 },\n]\n')
    result = CliRunner().invoke(app, ["recipe", "validate", str(tmp_path / "bad.toml")])
    assert result.exit_code == 2
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1 and "pretext.families[0].params.filter_sigma" in lines[0] and "prime" in lines[0]


def test_recipe_validates_and_builds_eq2_sampler(images: torch.Tensor) -> None:
    recipe = load(str(ROOT / "recipes/families/prime.toml"))
    names = [s.name for s in recipe.pretext.family_weights()]
    assert names == ["prime", "moco_v2"]
    result = CliRunner().invoke(app, ["recipe", "validate", str(ROOT / "recipes/families/prime.toml")])
    assert result.exit_code == 0, result.output
    # Eq. 2's weighted list with PRIME, on CPU at 32 px (the recipe's list, small images)
    sampler = build_sampler([FamilySpec(name="moco_v2", weight=0.5), FamilySpec(name="prime", weight=0.5)],
                            image_size=32, views=2)
    x = (images * 255).round().to(torch.uint8)
    views, fam = sampler(x, torch.Generator().manual_seed(14))
    assert len(views) == 2 and views[0].shape == (16, 3, 32, 32) and fam.shape == (2, 16)
    assert set(fam.unique().tolist()) == {0, 1}
    assert all(v.min() >= 0 and v.max() <= 1 for v in views)


def test_pickles_and_photometric_path(images: torch.Tensor) -> None:
    """Workers receive the family pickled; crops of original images use its crop_spec + photometric split."""
    fam = build_family("prime", 32)
    clone = pickle.loads(pickle.dumps(fam))
    g1, g2 = torch.Generator().manual_seed(15), torch.Generator().manual_seed(15)
    assert torch.equal(fam(images, g1), clone(images, g2))
    assert isinstance(fam, prime.Prime) and fam.crop_spec.kind == "pad"
    out = fam.photometric(images, torch.Generator().manual_seed(16))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1


def test_cpu_buckets_compute_what_one_launch_computes() -> None:
    """On the CPU, fields are bucketed by cut and colour sums by the runs each image uses; other devices take
    the one-launch path (prime._fields, prime._clenshaw). Both give the same numbers."""
    g = torch.Generator().manual_seed(17)
    cut, _ = prime.diffeo_params(300, 32, g, 2, 100, 1.0)
    cut[:5] = 101  # cut_max + 1, where the Beta draw rounds to 1.0: the last bucket holds it
    c = torch.randn(300, 101, 101, generator=g)
    torch.testing.assert_close(prime.scalar_fields(32, cut, c), prime._fields(32, cut, c), atol=1e-5, rtol=0)
    x = torch.rand(300, 3, 8, 8, generator=g)
    k0, coeffs = prime.smooth_color_params(300, 3, g, 100, 0.01, None)
    torch.testing.assert_close(prime.smooth_color(x, k0, coeffs), prime._clenshaw(x, k0, coeffs).clamp(0, 1),
                               atol=1e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (URRL_TEST_GPU=1 on a GPU machine)")
@pytest.mark.parametrize("name", ["prime", "pixmix", "trivialaugment", "randaugment"])
@pytest.mark.parametrize("size", [64, 224])
def test_new_robust_families_run_on_cuda(images: torch.Tensor, name: str, size: int) -> None:
    """The device branches (one launch set per op instead of the CPU's buckets) on a GPU, inside Eq. 2's list:
    views of the right shape, finite, in [0, 1], each family drawn, deterministic per seed."""
    sampler = build_sampler([FamilySpec(name="moco_v2", weight=0.5), FamilySpec(name=name, weight=0.5)],
                            image_size=size, views=2)
    x = F.interpolate(images, size=(size, size), mode="bilinear").mul(255).round().to(torch.uint8).cuda()

    def run() -> tuple[list[torch.Tensor], torch.Tensor]:
        return sampler(x, torch.Generator(device="cuda").manual_seed(21))

    views, fam = run()
    assert views[0].shape == (x.shape[0], 3, size, size) and views[0].device.type == "cuda"
    assert set(fam.unique().tolist()) == {0, 1}
    assert all(bool(torch.isfinite(v).all()) and v.min() >= 0 and v.max() <= 1 for v in views)
    again, _ = run()
    assert all(torch.equal(a, b) for a, b in zip(views, again, strict=True))
