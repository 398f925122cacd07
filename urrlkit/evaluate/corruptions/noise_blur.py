"""Noise and blur corruptions (hendrycks/robustness `make_*_c.py`), batched: every op takes a float batch
(N, 3, H, W) in [0, 1], the severity 1..5 and a `Rand`, and returns a float batch in [0, 1]."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from urrlkit.evaluate.corruptions.kernels import (
    Rand,
    conv2d_same,
    floor_u8,
    gaussian,
    motion_blur_batch,
    round_u8,
    separable,
    zoom_matrix,
)
from urrlkit.evaluate.corruptions.params import param

# ----------------------------------------------------------------------------------------------- noise


def gaussian_noise(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    c = param("gaussian_noise", severity, x.shape[-1])
    return (x + rng.normal(tuple(x.shape), scale=c).to(x.dtype)).clamp(0, 1)


def shot_noise(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    c = param("shot_noise", severity, x.shape[-1])
    return (torch.poisson(x.double() * c, generator=rng.torch) / c).to(x.dtype).clamp(0, 1)


def impulse_noise(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """skimage random_noise mode='s&p': each value flipped with probability `amount`, salt or pepper 50/50."""
    c = param("impulse_noise", severity, x.shape[-1])
    flipped = rng.uniform(0, 1, tuple(x.shape)) <= c
    salted = rng.uniform(0, 1, tuple(x.shape)) <= 0.5
    out = torch.where(flipped & salted, torch.ones_like(x), x)
    return torch.where(flipped & ~salted, torch.zeros_like(x), out)


def speckle_noise(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    c = param("speckle_noise", severity, x.shape[-1])
    return (x + x * rng.normal(tuple(x.shape), scale=c).to(x.dtype)).clamp(0, 1)


# ----------------------------------------------------------------------------------------------- blur


def gaussian_blur(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    return gaussian(x, param("gaussian_blur", severity, x.shape[-1])).clamp(0, 1)


def glass_blur(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """Gaussian blur, truncate to uint8, a local pixel walk, Gaussian blur again.

    The reference's "swap" `x[h, w], x[h', w'] = x[h', w'], x[h, w]` acts on numpy views, so it copies
    x[h', w'] into x[h, w] and leaves x[h', w'] unchanged; the official sets were made that way, and so is
    this. Offsets are drawn from randint(−δ, δ) (δ excluded), rows and columns visited from the bottom right.
    With δ = 1 every read position is still unvisited, so the walk is one gather; otherwise it runs in order.
    """
    sigma, delta, iterations = param("glass_blur", severity, x.shape[-1])
    n, c, h, w = x.shape
    y = floor_u8(gaussian(x, sigma))
    hs = list(range(h - delta, delta, -1))
    ws = list(range(w - delta, delta, -1))
    arr = (y * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (n, h, w, c)
    for _ in range(iterations):
        off = torch.from_numpy(rng.np.integers(-delta, delta, size=(len(hs), len(ws), n, 2)))  # (dx, dy)
        if delta == 1:
            hh = torch.tensor(hs).view(-1, 1, 1)
            ww = torch.tensor(ws).view(1, -1, 1)
            src = ((hh + off[..., 1]) * w + ww + off[..., 0]).permute(2, 0, 1).reshape(n, -1, 1)
            dst = (hh * w + ww).expand(-1, -1, n).permute(2, 0, 1).reshape(n, -1, 1)
            flat = arr.view(n, h * w, c)
            vals = torch.gather(flat, 1, src.expand(-1, -1, c))
            flat.scatter_(1, dst.expand(-1, -1, c), vals)
        else:
            a = arr.numpy()
            o = off.numpy()
            b = np.arange(n)
            for i, row in enumerate(hs):
                for j, col in enumerate(ws):
                    a[:, row, col] = a[b, row + o[i, j, :, 1], col + o[i, j, :, 0]]
    y = arr.permute(0, 3, 1, 2).to(x.dtype) / 255
    return gaussian(y, sigma).clamp(0, 1)


@functools.lru_cache(maxsize=32)
def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's `disk`: an aliased disk on a 17×17 grid (radius ≤ 8) or (2r+1)², normalised, then
    cv2.GaussianBlur with a 3×3 (5×5 above radius 8) kernel of σ = alias_blur and REFLECT_101 borders."""
    if radius <= 8:
        coords = torch.arange(-8, 9, dtype=torch.float64)
        ksize = 3
    else:
        coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
        ksize = 5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    d = ((xx**2 + yy**2) <= radius**2).double()
    d = d / d.sum()
    g = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    g = torch.exp(-(g**2) / (2 * alias_blur**2))
    g = g / g.sum()
    k = separable(d.view(1, 1, *d.shape), g, "mirror")[0, 0]
    # trim all-zero borders (exact: they add nothing) so small disks convolve fast
    nz = (k.abs() > 0).nonzero()
    r = int((nz - (k.shape[0] - 1) // 2).abs().max()) if nz.numel() else 0
    c = (k.shape[0] - 1) // 2
    return k[c - r : c + r + 1, c - r : c + r + 1].contiguous()


def defocus_blur(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    radius, alias = param("defocus_blur", severity, x.shape[-1])
    return conv2d_same(x, disk_kernel(radius, alias), "mirror").clamp(0, 1)


def motion_blur(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    radius, sigma = param("motion_blur", severity, x.shape[-1])
    angles = rng.uniform(-45, 45, (x.shape[0],))
    return round_u8(motion_blur_batch(x, radius, sigma, angles))


def zoom_factors(severity: int, size: int) -> np.ndarray:
    start, stop, step = param("zoom_blur", severity, size)
    return np.arange(start, stop, step)


@functools.lru_cache(maxsize=32)
def zoom_blur_operator(h: int, w: int, factors: tuple[float, ...]) -> torch.Tensor:
    """The whole zoom blur as one sparse (hw × hw) operator: (I + Σ_z A_z ⊗ B_z) / (Z + 1)."""
    eye = torch.eye(h * w, dtype=torch.float64)
    k = eye.clone()
    for f in factors:
        k += torch.kron(zoom_matrix(h, f), zoom_matrix(w, f))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return (k / (len(factors) + 1)).to_sparse_csr()


def zoom_blur(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    factors = zoom_factors(severity, x.shape[-1])
    n, c, h, w = x.shape
    if h * w <= 64 * 64:  # small images: one sparse matrix product for all zoom factors
        op = zoom_blur_operator(h, w, tuple(float(f) for f in factors)).to(x.dtype)
        out = (op @ x.reshape(n * c, h * w).T).T
        return out.reshape(n, c, h, w).clamp(0, 1)
    z = len(factors)
    mh = torch.cat([zoom_matrix(h, float(f), x.dtype) for f in factors])  # (Z·h, h)
    mw = torch.stack([zoom_matrix(w, float(f), x.dtype) for f in factors])  # (Z, w, w)
    m = n * c
    # rows of every factor in one GEMM, then the columns of each factor in one batched GEMM
    left = mh @ x.reshape(m, h, w).permute(1, 0, 2).reshape(h, m * w)  # (Z·h, m·w)
    left = left.view(z, h, m, w).permute(0, 2, 1, 3).reshape(z, m * h, w)
    out = torch.bmm(left, mw.transpose(1, 2)).sum(0)  # (m·h, w)
    return ((x + out.view(n, c, h, w)) / (z + 1)).clamp(0, 1)
