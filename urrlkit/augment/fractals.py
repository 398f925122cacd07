"""Mixing sets for PixMix: procedural IFS fractals (so PixMix works offline) or any folder of images.

PixMix (Hendrycks et al. 2022, andyzoujm/pixmix) mixes training images with a "mixing set"; its fractals come
from the IFS generator of "Improving Fractal Pre-training" (Anderson & Farrell 2022, catalys1/fractal-pretraining
``fractals/ifs.py``), re-stated here in torch:

- a system is 2–7 affine maps A_i·p + b_i with A_i = U_i·diag(σ_i1, σ_i2)·V_i (random rotations and
  reflections), singular values in [0, 1] with σ_i1 ≥ σ_i2 and Σ_i (σ_i1 + 2·σ_i2) = α ~ U((5 + n)/2, (6 + n)/2)
  (``sample_svs`` / ``sample_system``), translations b ~ U(−1, 1);
- the chaos game picks map i with probability ∝ |det A_i| and starts at the fixed point of A_1, which lies on
  the attractor (``iterate``); here 512 walkers run side by side instead of one long walk, each from that point
  and unrecorded for its first ``BURN_IN`` steps, for the reference generator's 100,000 points per fractal
  (training/datamodule/datasets/generator.py ``niter``);
- the points are counted per pixel of the bounding box and divided by the maximum (``render``, graded), and the
  density becomes the hue byte (density·255 + a random shift, mod 256) at a random saturation ∈ [0.3, 1] and
  value ∈ [0.5, 1] on black, converted as OpenCV's 8-bit COLOR_HSV2RGB does, whose hue byte is 2° a step
  (``colorize``).

Everything draws from one ``torch.Generator`` seeded by the caller: the same seed gives the same images.
A folder mixing set is decoded with PIL (never unpickled), Resize + CenterCrop to a square, as uint8.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from urrlkit.data.datasets import IMAGE_SUFFIXES, load_image, subset_indices
from urrlkit.errors import DataError


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def singular_values(n: int, a: float, g: torch.Generator) -> Tensor:
    """``sample_svs``: n pairs (σ1 ≥ σ2) in [0, 1] with Σ (σ1 + 2·σ2) = a, a ∈ (0, 3n); (n, 2) float64."""
    s = torch.empty(n, 2, dtype=torch.float64)
    p, q = a, a - 3 * n + 3  # what is left to share, and the least the remaining pairs must take
    for i in range(n - 1):
        s1 = _u(g, max(0.0, q / 3), min(1.0, p))
        q, p = q - s1, p - s1
        s2 = _u(g, max(0.0, q / 2), min(s1, p / 2))
        q, p = q - 2 * s2 + 3, p - 2 * s2
        s[i, 0], s[i, 1] = s1, s2
    s2 = _u(g, max(0.0, (p - 1) / 2), p / 3)
    s[-1, 0], s[-1, 1] = p - 2 * s2, s2
    return s


def sample_system(g: torch.Generator, n_maps: int | None = None) -> Tensor:
    """``sample_system(constrain=True)``: n ~ U{2 … 7} maps (n_maps fixes it), (n, 2, 3) float64 [A | b]."""
    n = int(torch.randint(2, 8, (), generator=g)) if n_maps is None else n_maps
    signs = torch.where(torch.rand(2 * n, 2, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0)
    angle = (torch.rand(2 * n, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    c, s_ = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([c, -s_], -1), torch.stack([s_, c], -1)], -2)  # (2n, 2, 2)
    uv = rot * signs.unsqueeze(1)  # rot @ diag(signs): a random rotation of a reflected basis
    u, v = uv[:n], uv[n:]
    sv = singular_values(n, _u(g, (5 + n) / 2, (6 + n) / 2), g)
    m = torch.empty(n, 2, 3, dtype=torch.float64)
    m[:, :, :2] = u * sv.unsqueeze(1) @ v
    m[:, :, 2] = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    return m


BURN_IN = 64
"""Chaos-game steps each walker takes before its points count. All walkers start at the reference's point, the
fixed point of the first map; without a burn-in the first steps of 512 walkers pile onto that point's few images
(5–6× the reference's points on the start pixel), and since the density is divided by its maximum, every other
pixel came out dark and nearly one hue. After 16 steps the point distribution is already as close to the
reference's single walk as a second such walk is (docs/augment.md); 64 leaves a margin for slowly contracting
systems."""

POINTS = 100_000
"""Chaos-game points per fractal whatever the size: the reference generator's ``niter = 100000``
(training/datamodule/datasets/generator.py)."""


def chaos_game(systems: list[Tensor], points: int, g: torch.Generator, walkers: int = 512,
               burn_in: int = BURN_IN) -> Tensor:
    """Points on each system's attractor, all systems at once: ``walkers`` walks per system, each from the fixed
    point (I − A_1)⁻¹·b_1 (on the attractor, where ``iterate`` starts its one walk), picking map i with
    p ∝ |det A_i| (uniform if every map is singular), ``burn_in`` steps unrecorded, then ⌈points / walkers⌉
    recorded. Returns (N, points, 2) float64."""
    n, most = len(systems), max(s.shape[0] for s in systems)
    maps = torch.zeros(n, most, 2, 3, dtype=torch.float64)
    real = torch.zeros(n, most, dtype=torch.bool)
    for i, s in enumerate(systems):
        maps[i, : s.shape[0]] = s
        real[i, : s.shape[0]] = True
    a, b = maps[..., :2], maps[..., 2]
    det = (a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]).abs()  # padding maps: det 0, never drawn
    det = torch.where(det.sum(1, keepdim=True) > 0, det, real.double())  # all singular: a 0/0 cdf otherwise
    cdf = (det / det.sum(1, keepdim=True)).cumsum(1)
    start = torch.linalg.lstsq(torch.eye(2, dtype=torch.float64) - a[:, 0], b[:, 0].unsqueeze(-1)).solution
    # Each step as six gathered coefficients and elementwise products: a batch of 2×2 matmuls took twice as long.
    coef = maps.reshape(n * most, 6).t().contiguous()  # a00, a01, b0, a10, a11, b1 of every map
    first = (torch.arange(n) * most).view(-1, 1)
    x, y = start[:, 0].expand(n, walkers), start[:, 1].expand(n, walkers)
    steps = -(-points // walkers)
    out = torch.empty(n, steps, walkers, 2, dtype=torch.float64)
    for t in range(-burn_in, steps):
        u = torch.rand(n, walkers, generator=g, dtype=torch.float64)
        c = coef[:, torch.searchsorted(cdf, u, right=True).clamp_(max=most - 1).add_(first)]  # (6, N, walkers)
        x, y = c[0] * x + c[1] * y + c[2], c[3] * x + c[4] * y + c[5]
        if t >= 0:
            out[:, t, :, 0], out[:, t, :, 1] = x, y
    return out.view(n, steps * walkers, 2)[:, :points]


def render(coords: Tensor, size: int) -> Tensor:
    """``render(binary=False)``: per system the count of points per pixel of its bounding box, over the max;
    row from x, column from y, as the reference. (N, P, 2) → (N, size, size) float64 in [0, 1]."""
    n = coords.shape[0]
    lo, hi = coords.amin(1), coords.amax(1)  # (N, 2)
    scale = (size - 1) / torch.where(hi - lo > 0, hi - lo, torch.ones_like(hi))
    row = (coords[..., 0] - lo[:, :1]).mul_(scale[:, :1]).long().clamp_(0, size - 1)
    col = (coords[..., 1] - lo[:, 1:]).mul_(scale[:, 1:]).long().clamp_(0, size - 1)
    flat = row.mul_(size).add_(col).add_((torch.arange(n) * size * size).view(-1, 1))
    counts = torch.bincount(flat.view(-1), minlength=n * size * size).view(n, size, size).double()
    return counts / counts.amax(dim=(1, 2), keepdim=True).clamp_min(1)


HUE_RANGE = 180
"""Hue units of a full turn in OpenCV's 8-bit COLOR_HSV2RGB, which ifs.py ``colorize`` calls (the _FULL codes
take 256): a hue byte h is 2·h degrees, and 180 … 255 wrap round to 0° … 150°."""

# Channel sources per sector (r, g, b) among v, v·(1 − s), v·(1 − s·f), v·(1 − s·(1 − f)): OpenCV's
# ``sector_data`` (listed there as b, g, r).
_SECTORS = torch.tensor([[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]])


def hsv_to_rgb8(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """OpenCV's cvtColor(COLOR_HSV2RGB) of 8-bit H, S, V (integer tensors of one shape), as its scalar code
    computes it (color_hsv.simd.hpp ``HSV2RGB_b`` → ``HSV2RGB_native``, then ``saturate_cast``): in float32,
    h·(6/180) splits into a sector (mod 6) and its fraction f; s, v are scaled by 1/255; the channels are v,
    v·(1 − s), v·(1 − s·f), v·(1 − s·(1 − f)) by sector (1 − s·f as one fused multiply-add, as the compiled
    library evaluates it), ×255 and rounded (half to even). Equal to OpenCV 5.1's x86-64 build on all 2²⁴
    inputs. Returns uint8 (..., 3) RGB.

    OpenCV runs this code on rows narrower than its vector block (64 pixels with AVX-512, 32 with AVX2) and on
    the last pixels of wider ones; the block itself truncates instead of rounding: one level lower in some
    channel for 74 % of inputs, 0.33 levels on average (docs/augment.md)."""
    f32 = torch.float32
    x = h.to(f32) * torch.tensor(6 / HUE_RANGE, dtype=f32)
    whole = torch.floor(x)
    f = x - whole
    inv = torch.tensor(1 / 255, dtype=f32)
    sf, vf = s.to(f32) * inv, v.to(f32) * inv

    def one_minus_s_times(y: Tensor) -> Tensor:  # 1 − s·y rounded once: float32 operands, exact product in float64
        return (1 - sf.double() * y.double()).to(f32)

    tab = torch.stack([vf, vf * (1 - sf), vf * one_minus_s_times(f), vf * one_minus_s_times(1 - f)], dim=-1)
    rgb = torch.gather(tab, -1, _SECTORS[torch.remainder(whole, 6).long()])
    return torch.round(rgb * 255).clamp_(0, 255).to(torch.uint8)


def colorize(density: Tensor, g: torch.Generator, min_sat: float = 0.3, min_val: float = 0.5) -> Tensor:
    """``colorize``: per image a hue shift ~ U(0, 255), saturation byte ⌊U(min_sat, 1)·255⌋ and value byte
    ⌊U(min_val, 1)·255⌋; every lit pixel gets the hue byte ⌊density·255 + shift⌋ mod 256 (the reference's
    ``np.uint8`` of a float64), unlit pixels are black; then HSV → RGB as OpenCV's COLOR_HSV2RGB
    (``hsv_to_rgb8``). (N, s, s) → uint8 (N, 3, s, s)."""
    n = density.shape[0]
    shift = torch.rand(n, 1, 1, generator=g, dtype=torch.float64) * 255
    sat = torch.floor((torch.rand(n, 1, generator=g, dtype=torch.float64) * (1 - min_sat) + min_sat) * 255)
    val = torch.floor((torch.rand(n, 1, generator=g, dtype=torch.float64) * (1 - min_val) + min_val) * 255)
    # One HSV → RGB per image and hue byte (256 entries, s and v fixed per image), then looked up per pixel.
    hues = torch.arange(256).expand(n, 256)
    table = hsv_to_rgb8(hues, sat.long().expand(n, 256), val.long().expand(n, 256))  # (N, 256, 3)
    h = torch.remainder(torch.floor(density.double() * 255 + shift), 256).long()  # (N, s, s)
    rgb = torch.gather(table, 1, h.view(n, -1, 1).expand(-1, -1, 3))  # (N, s·s, 3)
    rgb = rgb * (density > 0).view(n, -1, 1).to(torch.uint8)
    return rgb.view(n, *density.shape[1:], 3).permute(0, 3, 1, 2).contiguous()


def fractal_images(n: int, size: int, seed: int = 0, points: int = POINTS) -> Tensor:
    """n coloured IFS fractals, uint8 (n, 3, size, size), deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)
    systems = [sample_system(g) for _ in range(n)]
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for lo in range(0, n, 64):  # bounded memory: 64 systems' points at a time
        part = systems[lo:lo + 64]
        out[lo:lo + len(part)] = colorize(render(chaos_game(part, points, g), size), g)
    return out


def image_folder(root: str | Path, size: int, limit: int | None = None) -> Tensor:
    """Every image under ``root`` (recursively, sorted, hidden files skipped; at most ``limit``, a fixed random
    subset), decoded with PIL and Resize(size) + CenterCrop(size) as torchvision computes them: uint8
    (N, 3, size, size), held in memory (1,000 at 256 px: 197 MB)."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"pixmix mixing_set {str(root)!r}: no such folder (give 'fractals' or a folder of images)")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DataError(f"pixmix mixing_set {str(root)!r}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    if limit and limit < len(files):  # a fixed random subset in folder order: class folders sort, so the
        files = [files[i] for i in subset_indices(len(files), limit)]  # first N would be a few classes
    return torch.stack([load_image(f, size) for f in files])


@lru_cache(maxsize=4)
def mixing_set(source: str, size: int, n: int, seed: int = 0) -> Tensor:
    """The mixing set as uint8 (N, 3, size, size): ``"fractals"`` → n fractals of the seed; else the images of
    the folder ``source`` (at most n; n ≤ 0: all). Cached per arguments (shared, never modified)."""
    if source == "fractals":
        return fractal_images(n, size, seed)
    return image_folder(source, size, n if n > 0 else None)
