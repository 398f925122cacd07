"""PRIME (Modas et al. 2022, amodas/PRIME-augmentations), batched per sample, registered as ``prime``.

Three families of random "primitives", each a pure tensor op on [0, 1] images:

- random diffeomorphism (``utils/diffeomorphism.py`` ``Diffeo``): a smooth displacement field made of the first
  ``cut`` sine modes with Gaussian coefficients, scaled by a temperature T between "½ px typical displacement"
  and "no overhangs", applied by bilinear remapping;
- random spectral filter (``utils/rand_filter.py`` ``RandomFilter``): a 3×3 convolution with kernel δ + σ·N(0, 1),
  one kernel per image shared by its channels;
- random smooth colour (``utils/color_jitter.py`` ``RandomSmoothColor``): every channel value v moves by
  Σ_k c_k·sin(π·k·v), c_k ~ √T·N(0, 1), over ``cut`` frequencies (or a band of them).

They are mixed as ``utils/prime.py`` ``GeneralizedPRIMEModule`` mixes them (like AugMix): ``width`` chains of
depth U{1, 2, 3}, one primitive drawn uniformly per step, w ~ Dirichlet(1, …, 1), m ~ Beta(1, 1),
``out = (1 − m)·x + m·Σ_i w_i·chain_i``. Chains are grouped by the primitive they drew (augmix.run_chains).

Per-sample draws: the reference draws each primitive's strength (cut, T, σ) once per call and, for the diffeo,
one displacement field for the whole batch; here every image draws its own, as a per-image pipeline would.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from urrlkit.augment import augmix, rand
from urrlkit.augment.augmix_ops import Op
from urrlkit.augment.families import AugMix
from urrlkit.augment.groups import copy_rows_, group
from urrlkit.catalog import families as checks
from urrlkit.registry import FAMILIES

# ------------------------------------------------------------------------------------- diffeomorphism


def arcsine(n: int, g: torch.Generator) -> Tensor:
    """n draws from Beta(½, ½) by its inverse CDF sin²(π·u/2): the reference's Beta(s − s/(r + 1), s/(r + 1))
    at s = r = 1, the values of every PRIME config (``sT``, ``rT``, ``scut``, ``rcut``)."""
    return torch.sin(torch.rand(n, generator=g, device=g.device) * (math.pi / 2)).square_()


def temperature_range(n: int, cut: Tensor) -> tuple[Tensor, Tensor]:
    """``temperature_range`` of diffeomorphism.py: T1 gives a typical displacement of ½ px at the centre, T2 is
    the largest T without overhangs; log(cut + 1e-6) as the reference."""
    log = torch.log(cut + 1e-6)
    return 1 / (math.pi * n**2 * log), 4 / (math.pi**3 * (cut + 1e-6) ** 2 * log)


@lru_cache(maxsize=16)
def _modes(n: int, m: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """sin(π·x·k) for x = linspace(0, 1, n), k = 1…m, and the radius √(i² + j²) of every mode pair."""
    x = torch.linspace(0, 1, n, device=device)
    k = torch.arange(1, m + 1, device=device, dtype=torch.float32)
    return torch.sin(math.pi * x[:, None] * k[None, :]), torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2)


def scalar_fields(n: int, cut: Tensor, coeffs: Tensor) -> Tensor:
    """``scalar_field`` of diffeomorphism.py per image: u[y, x] = Σ_ij c_ij·e_ij·sin(π·x·i)·sin(π·y·j) with
    e_ij = [√(i² + j²) < cut + ½] / √(i² + j²); coeffs (B, M, M) N(0, 1), M ≥ every cut. Returns (B, n, n).

    e vanishes beyond i, j ≤ cut, so only the leading cut × cut block of each image's coefficients counts. On
    the CPU images are bucketed by cut (≤ M/4, ≤ M/2, ≤ M) and each bucket multiplies its block only: the
    cut is usually far below M (mean ≈ M/4), and the two matmuls cost M² per row. Other devices do one launch.
    """
    m = coeffs.shape[-1]
    if coeffs.device.type != "cpu" or m < 16:
        return _fields(n, cut, coeffs)
    bounds = [m // 4, m // 2, m]
    out = coeffs.new_empty(coeffs.shape[0], n, n)
    for k, idx in cut_buckets(cut, bounds):
        out[idx] = _fields(n, cut[idx], coeffs[idx, : bounds[k], : bounds[k]])
    return out


def cut_buckets(cut: Tensor, bounds: list[int]) -> list[tuple[int, Tensor]]:
    """The images of each bucket cut ≤ bounds[0], ≤ bounds[1], …; the last bucket also takes any cut above the
    last bound, so that no image is ever left out of the grouped apply (its output row would stay empty)."""
    ids = torch.bucketize(cut, torch.tensor(bounds, dtype=cut.dtype, device=cut.device)).clamp_(max=len(bounds) - 1)
    return group(ids, len(bounds))


def _fields(n: int, cut: Tensor, coeffs: Tensor) -> Tensor:
    s, r = _modes(n, coeffs.shape[-1], coeffs.device)
    e = torch.where(r < cut.view(-1, 1, 1) + 0.5, 1 / r, torch.zeros_like(r))
    return s @ (coeffs * e).transpose(1, 2) @ s.t()  # field[y, x] = Σ c[i, j] s[x, i] s[y, j]


def remap(x: Tensor, dx: Tensor, dy: Tensor) -> Tensor:
    """``remap`` of diffeomorphism.py (bilinear): out[y, x] = img(x − dx, y − dy), source clamped to the image;
    dx, dy (B, H, W) in pixels. As grid_sample with align_corners (pixel centres at −1 … 1)."""
    h, w = x.shape[-2:]
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, w)
    src_x = (xs - dx).clamp_(0, w - 1).mul_(2 / (w - 1)).sub_(1)
    src_y = (ys - dy).clamp_(0, h - 1).mul_(2 / (h - 1)).sub_(1)
    grid = torch.stack([src_x, src_y], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def diffeo_params(n_img: int, size: int, g: torch.Generator, cut_min: int, cut_max: int,
                  alpha: float) -> tuple[Tensor, Tensor]:
    """Per image (cut, T) as ``Diffeo(stochastic=True)`` draws them: cut_max' ~ U{cut_min + 1 … cut_max},
    cut = int(cut_min + Beta(½, ½)·(cut_max' + 1 − cut_min)), T = T1 + Beta(½, ½)·(max(T1, α·T2) − T1).

    cut ≤ cut_max' + 1 ≤ cut_max + 1: the top only where the Beta draw is exactly 1.0, which in float32 is the
    case for 1.7e-4 of torch.rand's values (sin(π·u/2) rounds to 1 for u ≥ 1 − 1.7e-4). The reference's int()
    reaches it the same way and renders that cut like any other, so it is kept, not clipped."""
    top = rand.randint(n_img, cut_min + 1, cut_max + 1, g).float()
    cut = (arcsine(n_img, g) * (top + 1 - cut_min) + cut_min).floor_()
    t1, t2 = temperature_range(size, cut)
    t2 = torch.maximum(t1, alpha * t2)
    return cut, arcsine(n_img, g) * (t2 - t1) + t1


def diffeo(x: Tensor, cut: Tensor, temperature: Tensor, cu: Tensor, cv: Tensor) -> Tensor:
    """``deform``: displacement dx = √T·u·n, dy = √T·v·n (u, v the scalar fields of cu, cv), then remap."""
    n = x.shape[-1]
    scale = (temperature.sqrt() * n).view(-1, 1, 1)
    return remap(x, scalar_fields(n, cut, cu) * scale, scalar_fields(n, cut, cv) * scale)


# ----------------------------------------------------------------------------------- spectral filter


def filter_kernels(sigma: Tensor, noise: Tensor) -> Tensor:
    """RandomFilter's kernels δ + σ·N(0, 1) (B, k, k). δ sits at the centre, so σ = 0 is the identity; the
    reference puts it at index ceil(k/2) (the corner for k = 3), a one-pixel shift at σ = 0 — taken as a slip."""
    k = noise.shape[-1]
    delta = torch.zeros(k, k, device=noise.device)
    delta[k // 2, k // 2] = 1
    return noise * sigma.view(-1, 1, 1) + delta


def spectral_filter(x: Tensor, kernels: Tensor) -> Tensor:
    """Each image convolved (zero padding, same size) with its own kernel, the same for its channels;
    clamped to [0, 1] as the reference."""
    b, c, h, w = x.shape
    k = kernels.shape[-1]
    weight = kernels.repeat_interleave(c, dim=0).unsqueeze(1)  # (B·C, 1, k, k): one group per image channel
    out = F.conv2d(x.reshape(1, b * c, h, w), weight, padding=k // 2, groups=b * c)
    return out.view(b, c, h, w).clamp_(0, 1)


# -------------------------------------------------------------------------------------- smooth colour


def smooth_color_params(n_img: int, channels: int, g: torch.Generator, cut: int, strength: float,
                        bandwidth: int | None) -> tuple[Tensor, Tensor]:
    """Per image the first frequency k0 and coefficients (B, C, L) of ``RandomSmoothColor(stochastic=True)``:
    cut' ~ U{1 … cut}, T ~ U(0, strength), c ~ √T·N(0, 1) for k = k0 … k0 + L − 1, zero beyond cut'.
    Without a bandwidth k0 = 1 and L = cut; with one, k0 ~ U{1 … cut'} and L = bandwidth."""
    top = rand.randint(n_img, 1, cut + 1, g)
    t = rand.uniform(n_img, 0.0, strength, g)
    if bandwidth is None:
        k0, length = torch.ones_like(top), cut
    else:
        k0, length = (torch.rand(n_img, generator=g, device=g.device) * top).long() + 1, bandwidth
    coeffs = torch.randn(n_img, channels, length, generator=g, device=g.device) * t.sqrt().view(-1, 1, 1)
    k = k0.view(-1, 1) + torch.arange(length, device=g.device)
    return k0, coeffs * (k <= top.view(-1, 1)).unsqueeze(1)


CLENSHAW_RUN = 32
"""Frequencies per Clenshaw run (a power of two): its float32 error grows with the run length (≈ 1e-5 at 32,
3e-3 at 500)."""


def smooth_color(x: Tensor, k0: Tensor, coeffs: Tensor) -> Tensor:
    """v + Σ_f c_f·sin(π·(k0 + f)·v) per image and channel, clamped to [0, 1] (``random_smooth_color``).

    Summed by Clenshaw's recurrence over runs of ``CLENSHAW_RUN`` frequencies: within a run starting at
    frequency j, b_f = c_f + 2·cos θ·b_{f+1} − b_{f+2} (θ = π·v) and the run adds b_0·sin(j·θ) − b_1·sin((j − 1)·θ).
    Two passes per frequency, where the reference evaluates a sine per frequency and pixel (3–5×
    faster than one sine from the last by angle addition). Error ≤ 1e-5 at the reference configs (100
    frequencies; 20 from up to 500), 7e-5 with 500 frequencies; a grey level is 4e-3, and the reference's own
    float32 sines err by 2e-5 and 1e-4 there.
    """
    if x.device.type == "cpu" and coeffs.shape[-1] > CLENSHAW_RUN:
        # On the CPU, images whose colour curve stops early (coefficients are zero past each image's cut) run
        # only the runs they need: trailing zero coefficients add exactly nothing. A GPU does one launch set.
        used = (coeffs != 0).any(dim=1)  # (B, L)
        last = torch.where(used, torch.arange(1, used.shape[1] + 1), 0).amax(dim=1)
        runs = (last + CLENSHAW_RUN - 1) // CLENSHAW_RUN
        out = x.clone()
        for r, idx in group(runs, -(-coeffs.shape[-1] // CLENSHAW_RUN) + 1):
            if r:
                part = coeffs[idx, :, : r * CLENSHAW_RUN]
                copy_rows_(out, idx, _clenshaw(x.index_select(0, idx), k0[idx], part))
        return out.clamp_(0, 1)
    return _clenshaw(x, k0, coeffs).clamp_(0, 1)


def _clenshaw(x: Tensor, k0: Tensor, coeffs: Tensor) -> Tensor:
    theta = x * math.pi
    sin1, cos1 = torch.sin(theta), torch.cos(theta)
    c2 = cos1 * 2
    # sin, cos of k0·θ: the first frequency can be in the hundreds, so reduce k0·v mod 2 in float64 (in float32
    # the argument alone is off by 1e-4 rad). Runs then advance by RUN·θ, whose reduction is exact in float32.
    start = (x.double() * k0.view(-1, 1, 1, 1)).remainder_(2).mul_(math.pi).to(x.dtype)
    s, c = torch.sin(start), torch.cos(start)
    step = torch.remainder(x * CLENSHAW_RUN, 2).mul_(math.pi)
    s_step, c_step = torch.sin(step), torch.cos(step)
    out = x.clone()
    b1, b2, b0 = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
    for lo in range(0, coeffs.shape[-1], CLENSHAW_RUN):
        if lo:  # (s, c) ← sin, cos of (j + RUN)·θ
            s, c = s * c_step + c * s_step, c * c_step - s * s_step
        b1.zero_()
        b2.zero_()
        for f in range(min(lo + CLENSHAW_RUN, coeffs.shape[-1]) - 1, lo - 1, -1):
            torch.addcmul(coeffs[:, :, f, None, None], c2, b1, out=b0).sub_(b2)  # b_f, in two passes
            b0, b1, b2 = b2, b0, b1
        out.addcmul_(b1, s).addcmul_(b2, s * cos1 - c * sin1, value=-1)  # b_j·sin(jθ) − b_j+1·sin((j − 1)θ)
    return out


# ------------------------------------------------------------------------------------------- the family


class Prime(AugMix):
    """Crop + flip (AugMix's first stage: pad-4 crop ≤ 64 px, RandomResizedCrop above, as PRIME's train.py),
    then PRIME with per-sample chains of its primitives."""

    def __init__(self, image_size: int, width: int = 3, depth: int = -1, ops: tuple[str, ...] = (),
                 diffeo_cut_min: int = 2, diffeo_cut_max: int = 100, diffeo_alpha: float = 1.0,
                 color_cut: int = 100, color_strength: float = 0.01, color_bandwidth: int | None = None,
                 filter_size: int = 3, filter_sigma: float = 4.0, crop: str = "auto", scale_min: float = 0.08,
                 flip: bool = True) -> None:
        super().__init__(image_size, [], None, width, depth, crop, scale_min, flip)
        self.diffeo_cut = (diffeo_cut_min, diffeo_cut_max)
        self.diffeo_alpha = diffeo_alpha
        self.color = (color_cut, color_strength, color_bandwidth)
        self.filter = (filter_size, filter_sigma)
        table: dict[str, Op] = {"diffeo": self._diffeo, "color": self._color, "filter": self._filter}
        self.op_names = list(ops)
        self.ops = [table[name] for name in ops]

    # Chain ops (augmix.run_chains signature; level and sign are AugMix's and unused): each draws its
    # own strength per image of its group.
    def _diffeo(self, x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
        n = x.shape[0]
        cut, t = diffeo_params(n, x.shape[-1], g, *self.diffeo_cut, self.diffeo_alpha)
        m = int(self.diffeo_cut[1]) + 1  # coefficients for every mode a cut can reach (diffeo_params: ≤ max + 1)
        if x.device.type != "cpu":  # one draw and one launch set for the batch
            cu, cv = (torch.randn(n, m, m, generator=g, device=g.device) for _ in range(2))
            return diffeo(x, cut, t, cu, cv)
        # CPU: drawing 2·M² normals per image was 70 % of the op, and only cut × cut of them count; images are
        # bucketed by cut (≤ M/4, ≤ M/2, ≤ M) and each bucket draws its own block.
        bounds = [max(m // 4, 1), max(m // 2, 1), m]
        out = torch.empty_like(x)
        for k, idx in cut_buckets(cut, bounds):
            b = bounds[k]
            cu, cv = (torch.randn(idx.numel(), b, b, generator=g) for _ in range(2))
            copy_rows_(out, idx, diffeo(x.index_select(0, idx), cut[idx], t[idx], cu, cv))
        return out

    def _color(self, x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
        return smooth_color(x, *smooth_color_params(x.shape[0], x.shape[1], g, *self.color))

    def _filter(self, x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
        size, sigma = self.filter
        n = x.shape[0]
        noise = torch.randn(n, size, size, generator=g, device=g.device)
        return spectral_filter(x, filter_kernels(rand.uniform(n, 0.0, sigma, g), noise))

    def photometric(self, x: Tensor, g: torch.Generator) -> Tensor:
        """PRIME itself on views (B, 3, image_size, image_size) in [0, 1], already cropped and flipped."""
        p = augmix.sample_params(x.shape[0], len(self.ops), g, 1.0, self.width, self.depth)
        chains = augmix.run_chains(x, p, self.ops, g)  # (width, B, 3, s, s), in [0, 1]
        return mix(x, chains, p.weights, p.m)


def mix(x: Tensor, chains: Tensor, weights: Tensor, m: Tensor) -> Tensor:
    """GeneralizedPRIMEModule's mix: (1 − m)·x + m·Σ_i w_i·chain_i (pixel space; the reference mixes after
    its normalisation layer, which is affine with weights summing to one, so the two agree)."""
    out = x * (1 - m).view(-1, 1, 1, 1)
    coef = (weights * m.view(-1, 1)).t()  # (width, B)
    for i in range(chains.shape[0]):
        out.addcmul_(chains[i], coef[i].view(-1, 1, 1, 1))
    return out.clamp_(0, 1)


@FAMILIES.register("prime")
def prime(image_size: int, width: int = 3, depth: int = -1, diffeo: bool = True, color: bool = True,
          filter: bool = True, diffeo_cut_max: int | None = None, diffeo_alpha: float = 1.0,
          color_cut: int | None = None, color_strength: float | None = None, color_bandwidth: int | None = None,
          filter_sigma: float = 4.0, crop: str = "auto", scale_min: float = 0.08, flip: bool = True) -> Prime:
    """PRIME (amodas/PRIME-augmentations): diffeomorphisms, spectral filters and smooth colour changes mixed
    like AugMix. Defaults are the reference configs: config/cifar10_cfg.py for image_size ≤ 64
    (diffeo_cut_max 100, color_cut 100, color_strength 0.01, no colour bandwidth) and config/imagenet_cfg.py
    above (500, 500, 0.05, bandwidth 20); both: diffeo cut_min 2, alpha 1, filter 3×3 with sigma 4, width 3,
    depth −1 (U{1, 2, 3}, prime.py max_depth 3). color_bandwidth 0 = every frequency up to the cut.
    diffeo / color / filter switch each primitive (config.enable_aug); crop, scale_min, flip as ``augmix``."""
    checks.prime(**locals())  # the ranges, shared with torch-free recipe validation
    s = checks.prime_settings(image_size, diffeo_cut_max, color_cut, color_strength, color_bandwidth)
    ops = tuple(name for name, on in (("diffeo", diffeo), ("color", color), ("filter", filter)) if on)
    return Prime(image_size, width, depth, ops, 2, s.diffeo_cut_max, diffeo_alpha, s.color_cut, s.color_strength,
                 s.color_bandwidth, 3, filter_sigma, crop, scale_min, flip)
