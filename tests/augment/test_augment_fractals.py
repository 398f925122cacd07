"""The PixMix fractal mixing set (urrlkit/augment/fractals.py) against catalys1/fractal-pretraining fractals/ifs.py:
systems meet sample_system's constraints; the chaos game samples the attractor as the reference's one long walk
``iterate`` does (the same point distribution, up to the walk's own sampling noise); colours are ``colorize``'s,
through OpenCV's 8-bit COLOR_HSV2RGB (hue bytes in [0, 180), pinned to values recorded from OpenCV 5.1); the
images are deterministic per seed and non-trivial."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from urrlkit.augment import fractals

# (h, s, v) bytes → RGB as cv2.cvtColor(COLOR_HSV2RGB) gives them (OpenCV 5.1, x86-64, its per-pixel code): the
# primaries every 30 hue units, bytes ≥ 180 wrapping round, and inputs where rounding order matters.
OPENCV_HSV2RGB = [
    ((0, 255, 255), (255, 0, 0)), ((15, 255, 255), (255, 128, 0)), ((30, 255, 255), (255, 255, 0)),
    ((60, 255, 255), (0, 255, 0)), ((90, 255, 255), (0, 255, 255)), ((120, 255, 255), (0, 0, 255)),
    ((150, 255, 255), (255, 0, 255)), ((179, 255, 255), (255, 0, 8)), ((180, 255, 255), (255, 0, 0)),
    ((210, 255, 255), (255, 255, 0)), ((255, 255, 255), (0, 255, 128)), ((1, 153, 25), (25, 10, 10)),
    ((3, 187, 75), (75, 26, 20)), ((45, 200, 180), (109, 180, 39)), ((100, 77, 128), (89, 115, 128)),
    ((170, 255, 140), (140, 0, 47)), ((200, 90, 230), (230, 203, 149)), ((240, 128, 255), (127, 255, 127)),
    ((7, 0, 200), (200, 200, 200)),
]


def test_singular_values_meet_the_constraints() -> None:
    g = torch.Generator().manual_seed(7)
    for n in range(2, 8):
        for _ in range(50):
            a = fractals._u(g, (5 + n) / 2, (6 + n) / 2)
            s = fractals.singular_values(n, a, g)
            assert (s >= -1e-12).all() and (s <= 1 + 1e-12).all() and (s[:, 0] >= s[:, 1] - 1e-12).all()
            assert abs((s[:, 0] + 2 * s[:, 1]).sum().item() - a) < 1e-9


def test_systems_are_contractive_with_the_drawn_singular_values() -> None:
    g = torch.Generator().manual_seed(8)
    sizes = []
    for _ in range(200):
        m = fractals.sample_system(g)
        sv = torch.linalg.svdvals(m[:, :, :2])
        assert (sv <= 1 + 1e-9).all()
        total = (sv[:, 0] + 2 * sv[:, 1]).sum().item()
        n = m.shape[0]
        assert (5 + n) / 2 - 1e-9 <= total <= (6 + n) / 2 + 1e-9
        assert (m[:, :, 2].abs() <= 1).all()
        sizes.append(n)
    assert set(sizes) == set(range(2, 8))  # n ~ U{2 … 7}


def test_chaos_game_stays_on_the_attractor() -> None:
    """Every point of a walk from the fixed point of A_1 is a point of the attractor: it satisfies the
    invariance bound |p| ≤ max|b| / (1 − max‖A‖) that contains the attractor."""
    g = torch.Generator().manual_seed(9)
    systems = [fractals.sample_system(g) for _ in range(8)]
    pts = fractals.chaos_game(systems, 4096, g, walkers=256)
    assert pts.shape == (8, 4096, 2) and torch.isfinite(pts).all()
    for s, p in zip(systems, pts, strict=True):
        norm = torch.linalg.matrix_norm(s[:, :, :2], ord=2).max().item()
        radius = s[:, :, 2].norm(dim=1).max().item() / (1 - norm)
        assert p.norm(dim=1).max().item() <= radius + 1e-9


def test_fractals_deterministic_per_seed_and_non_trivial() -> None:
    a, b = fractals.fractal_images(12, 36, seed=3), fractals.fractal_images(12, 36, seed=3)
    c = fractals.fractal_images(12, 36, seed=4)
    assert a.dtype == torch.uint8 and a.shape == (12, 3, 36, 36)
    assert torch.equal(a, b) and not torch.equal(a, c)
    lit = (a.amax(dim=1) > 0).float().mean(dim=(1, 2))  # coverage: the shape fills part of the picture
    assert (lit > 0.02).all() and (lit < 0.95).all() and lit.mean() > 0.15
    assert (a.flatten(1).float().std(dim=1) > 10).all()  # not flat
    assert len({tuple(img.flatten(1).float().mean(1).round().tolist()) for img in a}) == 12  # all different


def test_render_counts_points() -> None:
    coords = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.5, 0.0]]], dtype=torch.float64)
    img = fractals.render(coords, 3)
    expected = torch.zeros(1, 3, 3, dtype=torch.float64)
    expected[0, 0, 0], expected[0, 2, 2], expected[0, 1, 0] = 0.5, 1.0, 0.5
    torch.testing.assert_close(img, expected)


# ------------------------------------------------------------------------ the chaos game against iterate


def ref_iterate(system: torch.Tensor, n_iter: int, rng: random.Random) -> np.ndarray:
    """ifs.py ``iterate``: one walk of n_iter points from the fixed point of A_1, map k where r < cumsum(p)[k],
    p ∝ |det A_k|."""
    m = system.tolist()
    det = [a[0][0] * a[1][1] - a[0][1] * a[1][0] for a in m]
    cdf = np.cumsum(np.abs(det) / np.abs(det).sum()).tolist()
    (a, b, e), (c, d, f) = m[0]
    s = 1 / (1 + det[0] - a - d)
    x, y = s * ((1 - d) * e + b * f), s * ((1 - a) * f + c * e)
    out = np.empty((n_iter, 2))
    for i in range(n_iter):
        r = rng.random()
        k = next((j for j, q in enumerate(cdf) if r < q), len(cdf) - 1)
        (a, b, e), (c, d, f) = m[k]
        x, y = a * x + b * y + e, c * x + d * y + f
        out[i] = x, y
    return out


def counts(coords: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
    return fractals.render(torch.as_tensor(coords).unsqueeze(0), size)[0].numpy()


def test_chaos_game_samples_what_the_reference_walk_samples() -> None:
    """Per system, the rendered density of our walkers is as close to one reference walk's as a second reference
    walk is (total variation, averaged over systems), and its normalised level over the lit pixels — the hue
    offset — is the reference's. Walkers all starting at the fixed point with no burn-in failed both: the start
    pixel held 5× the reference's points, so every other pixel came out dark and one hue (0.10 vs 0.23)."""
    g = torch.Generator().manual_seed(20)
    systems = [fractals.sample_system(g) for _ in range(10)]
    size, n = 36, 20_000
    ours = fractals.chaos_game(systems, n, g)
    assert ours.shape == (10, n, 2)
    rng = random.Random(0)
    tv, floor, level, ref_level = [], [], [], []
    for s, pts in zip(systems, ours, strict=True):
        r1, r2, o = counts(ref_iterate(s, n, rng), size), counts(ref_iterate(s, n, rng), size), counts(pts, size)
        r1n, r2n, on = r1 / r1.sum(), r2 / r2.sum(), o / o.sum()
        tv.append(0.5 * np.abs(on - r1n).sum())
        floor.append(0.5 * np.abs(r2n - r1n).sum())
        level.append(o[o > 0].mean())
        ref_level.append(r1[r1 > 0].mean())
    assert np.mean(tv) <= 1.2 * np.mean(floor) + 0.01, (np.mean(tv), np.mean(floor))
    assert abs(np.mean(level) / np.mean(ref_level) - 1) < 0.1, (np.mean(level), np.mean(ref_level))


def test_chaos_game_burn_in_is_unrecorded() -> None:
    """The walkers' first ``burn_in`` steps are drawn but not returned: with burn_in = 0 the recorded points are
    the walk from the start, with burn_in = b the same walk from step b on (same generator draws)."""
    systems = [fractals.sample_system(torch.Generator().manual_seed(21))]
    full = fractals.chaos_game(systems, 12 * 8, torch.Generator().manual_seed(22), walkers=8, burn_in=0)
    late = fractals.chaos_game(systems, 9 * 8, torch.Generator().manual_seed(22), walkers=8, burn_in=3)
    torch.testing.assert_close(late.view(9, 8, 2), full.view(12, 8, 2)[3:], atol=1e-12, rtol=0)


def test_chaos_game_survives_degenerate_systems() -> None:
    """Maps that are all singular (|det| = 0: no map can be drawn ∝ |det|) are drawn uniformly; a first map with
    eigenvalue 1 (I − A_1 singular) still gives a start point. Every point finite."""
    flat = torch.zeros(3, 2, 3, dtype=torch.float64)
    flat[:, :, 2] = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # constant maps
    stuck = torch.tensor([[[1.0, 0.0, 0.2], [0.0, 0.5, 0.1]], [[0.5, 0.0, -0.5], [0.0, 0.5, 0.5]]],
                         dtype=torch.float64)
    pts = fractals.chaos_game([flat, stuck], 3_000, torch.Generator().manual_seed(23))
    assert torch.isfinite(pts).all()
    assert {tuple(p) for p in pts[0].round(decimals=9).tolist()} == {(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)}


# --------------------------------------------------------------------------------------------- colours


@pytest.mark.parametrize(("hsv", "rgb"), OPENCV_HSV2RGB)
def test_hsv_to_rgb8_is_opencv_hsv2rgb(hsv: tuple[int, int, int], rgb: tuple[int, int, int]) -> None:
    h, s, v = (torch.tensor([c]) for c in hsv)
    assert tuple(fractals.hsv_to_rgb8(h, s, v)[0].tolist()) == rgb


def test_hue_bytes_turn_every_180() -> None:
    """COLOR_HSV2RGB's hue byte is 2° a step: bytes 180 … 255 repeat 0 … 75 (the _FULL codes would spread 0 … 255
    over the turn instead, which colorize used before: 48/255 mean RGB difference on the same densities)."""
    h = torch.arange(76).repeat_interleave(64)
    s, v = torch.arange(0, 256, 4).repeat(76), torch.arange(255, -1, -4).repeat(76)
    assert torch.equal(fractals.hsv_to_rgb8(h + 180, s, v), fractals.hsv_to_rgb8(h, s, v))
    ramp = fractals.hsv_to_rgb8(torch.arange(0, 180, 30), torch.full((6,), 255), torch.full((6,), 255))
    assert ramp.tolist() == [[255, 0, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255], [0, 0, 255], [255, 0, 255]]


def test_colorize_is_the_reference_hsv_colorize() -> None:
    """ifs.py ``_hsv_colorize`` + ``cvtColor(COLOR_HSV2RGB)`` per pixel: hue byte uint8(x·255 + shift) (mod 256),
    saturation uint8(U(0.3, 1)·255), value uint8(U(0.5, 1)·255) per image; black where x = 0."""
    g = torch.Generator().manual_seed(24)
    density = torch.rand(5, 9, 9, generator=g, dtype=torch.float64)
    density[density < 0.3] = 0
    state = g.get_state()
    ours = fractals.colorize(density, g)
    g.set_state(state)
    shift = torch.rand(5, generator=g, dtype=torch.float64) * 255
    sat = torch.rand(5, generator=g, dtype=torch.float64) * 0.7 + 0.3
    val = torch.rand(5, generator=g, dtype=torch.float64) * 0.5 + 0.5
    for i in range(5):
        s8, v8 = int(sat[i] * 255), int(val[i] * 255)
        for y in range(9):
            for x in range(9):
                d = float(density[i, y, x])
                if d == 0:
                    assert ours[i, :, y, x].tolist() == [0, 0, 0]
                    continue
                h8 = int(d * 255 + float(shift[i])) % 256
                want = fractals.hsv_to_rgb8(torch.tensor(h8), torch.tensor(s8), torch.tensor(v8)).tolist()
                assert ours[i, :, y, x].tolist() == want
