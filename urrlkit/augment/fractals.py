"""Mixing sets for PixMix: procedural IFS fractals (so PixMix works offline) or any folder of images.

PixMix (Hendrycks et al. 2022, andyzoujm/pixmix) mixes training images with a "mixing set"; its fractals come
from the IFS generator of "Improving Fractal Pre-training" (Anderson & Farrell 2022, catalys1/fractal-pretraining
``fractals/ifs.py``), re-stated here in torch:

- a system is 2–7 affine maps A_i·p + b_i with A_i = U_i·diag(σ_i1, σ_i2)·V_i (random rotations and
  reflections), singular values in [0, 1] with σ_i1 ≥ σ_i2 and Σ_i (σ_i1 + 2·σ_i2) = α ~ U((5 + n)/2, (6 + n)/2)
  (``sample_svs`` / ``sample_system``), translations b ~ U(−1, 1);
- the chaos game picks map i with probability ∝ |det A_i| and starts at the fixed point of A_1, which lies on
  the attractor (``iterate``); here many walkers run side by side instead of one long walk;
- the points are counted per pixel of the bounding box and divided by the maximum (``render``, graded), and the
  density becomes the hue (density·255 + a random shift, mod 256) at a random saturation ∈ [0.3, 1] and value
  ∈ [0.5, 1] on black (``colorize``).

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


def chaos_game(systems: list[Tensor], points: int, g: torch.Generator, walkers: int = 512) -> Tensor:
    """Points on each system's attractor: ``walkers`` walks of ⌈points / walkers⌉ steps per system, all systems
    at once; every walk starts at the fixed point (I − A_1)⁻¹·b_1 and picks map i with p ∝ |det A_i|.
    Returns (N, steps·walkers, 2) float64."""
    n, most = len(systems), max(s.shape[0] for s in systems)
    maps = torch.zeros(n, most, 2, 3, dtype=torch.float64)
    for i, s in enumerate(systems):
        maps[i, : s.shape[0]] = s
    a, b = maps[..., :2], maps[..., 2]
    det = (a[..., 0, 0] * a[..., 1, 1] - a[..., 0, 1] * a[..., 1, 0]).abs()  # padding maps: det 0, never drawn
    cdf = (det / det.sum(1, keepdim=True)).cumsum(1)
    start = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - a[:, 0], b[:, 0])  # (N, 2)
    p = start.unsqueeze(1).expand(n, walkers, 2).clone()
    steps = -(-points // walkers)
    out = torch.empty(n, steps, walkers, 2, dtype=torch.float64)
    rows = torch.arange(n).view(-1, 1)
    for t in range(steps):
        u = torch.rand(n, walkers, generator=g, dtype=torch.float64)
        k = torch.searchsorted(cdf, u, right=True).clamp_(max=most - 1)
        p = (a[rows, k] @ p.unsqueeze(-1)).squeeze(-1) + b[rows, k]
        out[:, t] = p
    return out.view(n, steps * walkers, 2)


def render(coords: Tensor, size: int) -> Tensor:
    """``render(binary=False)``: per system the count of points per pixel of its bounding box, over the max;
    row from x, column from y, as the reference. (N, P, 2) → (N, size, size) float32 in [0, 1]."""
    lo, hi = coords.amin(1, keepdim=True), coords.amax(1, keepdim=True)
    span = torch.where(hi - lo > 0, hi - lo, torch.ones_like(hi))
    idx = ((coords - lo) * ((size - 1) / span)).long().clamp_(0, size - 1)
    n = coords.shape[0]
    flat = (torch.arange(n).view(-1, 1) * size + idx[..., 0]) * size + idx[..., 1]
    counts = torch.bincount(flat.view(-1), minlength=n * size * size).view(n, size, size).float()
    return counts / counts.amax(dim=(1, 2), keepdim=True).clamp_min(1)


def colorize(density: Tensor, g: torch.Generator, min_sat: float = 0.3, min_val: float = 0.5) -> Tensor:
    """``colorize``: hue (density·255 + U(0, 255)) mod 256 (as uint8), one saturation ~ U(min_sat, 1) and
    value ~ U(min_val, 1) per image, black where no point fell; HSV → RGB as OpenCV's 8-bit conversion
    (hue in [0, 180) units after / 256 · 360). (N, s, s) → uint8 (N, 3, s, s)."""
    n = density.shape[0]
    shift = torch.rand(n, 1, 1, generator=g) * 255
    sat = (torch.rand(n, 1, 1, generator=g) * (1 - min_sat) + min_sat).mul_(255).floor_().div_(255)
    val = (torch.rand(n, 1, 1, generator=g) * (1 - min_val) + min_val).mul_(255).floor_().div_(255)
    hue = torch.remainder(torch.floor(density * 255 + shift), 256) / 256 * 6  # sextants
    # closed-form HSV → RGB: channel = v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + h) mod 6, n = 5, 3, 1
    k = torch.remainder(hue.unsqueeze(1) + torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1), 6)
    w = torch.minimum(k, 4 - k).clamp_(0, 1)
    rgb = val.unsqueeze(1) * (1 - sat.unsqueeze(1) * w)
    return (rgb * (density > 0).unsqueeze(1) * 255).round_().to(torch.uint8)


def points_for(size: int) -> int:
    """Chaos-game points per fractal: 4 per pixel, within [20,000, 200,000] (enough that the density, not the
    sampling noise, makes the colours; more only costs time)."""
    return min(200_000, max(20_000, 4 * size * size))


def fractal_images(n: int, size: int, seed: int = 0, points: int | None = None) -> Tensor:
    """n coloured IFS fractals, uint8 (n, 3, size, size), deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)
    systems = [sample_system(g) for _ in range(n)]
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for lo in range(0, n, 64):  # bounded memory: 64 systems' points at a time
        part = systems[lo:lo + 64]
        out[lo:lo + len(part)] = colorize(render(chaos_game(part, points or points_for(size), g), size), g)
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
