"""Weather corruptions (snow, frost, fog, spatter) of hendrycks/robustness `make_*_c.py`, batched."""

from __future__ import annotations

import numpy as np
import torch

from urrlkit.evaluate.corruptions.kernels import (
    Rand,
    clipped_zoom,
    floor_u8,
    gaussian,
    gray,
    motion_blur_batch,
    round_u8,
)
from urrlkit.evaluate.corruptions.params import NATIVE, param, size_class

# ----------------------------------------------------------------------------------------------- weather


def snow(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    loc, scale, zoom, thresh, radius, sigma, blend = param("snow", severity, x.shape[-1])
    n, _, h, w = x.shape
    layer = rng.normal((n, 1, h, w), loc=loc, scale=scale).to(x.dtype)
    layer = clipped_zoom(layer, zoom)
    layer = torch.where(layer < thresh, torch.zeros_like(layer), layer)
    layer = floor_u8(layer)
    layer = round_u8(motion_blur_batch(layer, radius, sigma, rng.uniform(-135, -45, (n,))))
    y = blend * x + (1 - blend) * torch.maximum(x, gray(x) * 1.5 + 0.5)
    return (y + layer + torch.rot90(layer, 2, dims=(-2, -1))).clamp(0, 1)


def frost(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """The reference's blend a·x + b·frost with a random crop of one of the first five frost photographs (or
    the procedural fallback), scaled as the table's script scales it (0.2 at 32 px, 0.3 at 64, 1 at 224) and
    proportionally at other sizes."""
    from urrlkit.evaluate.corruptions.textures import N_DRAWN, frost_textures

    a, b = param("frost", severity, x.shape[-1])
    n, _, h, w = x.shape
    scale = param("frost_scale", 1, h) * h / NATIVE[size_class(h)]
    textures = frost_textures(scale)
    pick = rng.np.integers(0, min(N_DRAWN, len(textures)), size=n)
    crops = []
    for k in range(n):
        t = textures[int(pick[k])]
        top = int(rng.np.integers(0, t.shape[1] - h))
        left = int(rng.np.integers(0, t.shape[2] - w))
        crops.append(t[:, top : top + h, left : left + w])
    fr = torch.stack(crops).to(x.dtype)  # 0..255
    return ((a * x * 255 + b * fr) / 255).clamp(0, 1)


def plasma_fractal(n: int, mapsize: int, wibbledecay: float, rng: Rand) -> torch.Tensor:
    """The reference's diamond-square plasma fractal (n maps at once), normalised to [0, 1]."""
    m = torch.zeros(n, mapsize, mapsize, dtype=torch.float64)
    step = mapsize
    wibble = 100.0

    def wibbled(a: torch.Tensor) -> torch.Tensor:
        return a / 4 + wibble * rng.uniform(-wibble, wibble, tuple(a.shape), torch.float64)

    while step >= 2:
        half = step // 2
        corner = m[:, 0:mapsize:step, 0:mapsize:step]
        sq = corner + torch.roll(corner, -1, 1)
        sq = sq + torch.roll(sq, -1, 2)
        m[:, half:mapsize:step, half:mapsize:step] = wibbled(sq)
        dr = m[:, half:mapsize:step, half:mapsize:step]
        ul = m[:, 0:mapsize:step, 0:mapsize:step]
        lt = dr + torch.roll(dr, 1, 1) + ul + torch.roll(ul, -1, 2)
        m[:, 0:mapsize:step, half:mapsize:step] = wibbled(lt)
        tt = dr + torch.roll(dr, 1, 2) + ul + torch.roll(ul, -1, 1)
        m[:, half:mapsize:step, 0:mapsize:step] = wibbled(tt)
        step //= 2
        wibble /= wibbledecay
    m = m - m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def fog(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    strength, decay = param("fog", severity, x.shape[-1])
    n, _, h, w = x.shape
    mapsize = 1 << max(h, w, 2).__sub__(1).bit_length()
    plasma = plasma_fractal(n, mapsize, decay, rng)[:, :h, :w].unsqueeze(1).to(x.dtype)
    max_val = x.amax((1, 2, 3), keepdim=True)
    y = x + strength * plasma
    return (y * max_val / (max_val + strength)).clamp(0, 1)


def spatter(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """Water (severities with mud = 0) or mud splashes. The water branch's OpenCV steps (Canny, chamfer
    distance transform, equalizeHist, emboss) follow OpenCV exactly in numpy (`cv_ops.water_mask`)."""
    loc, scale, sigma, thresh, intensity, mud = param("spatter", severity, x.shape[-1])
    n, _, h, w = x.shape
    liquid = gaussian(rng.normal((n, 1, h, w), loc=loc, scale=scale).to(x.dtype), sigma)
    liquid = torch.where(liquid < thresh, torch.zeros_like(liquid), liquid)
    if mud:
        m = gaussian((liquid > thresh).to(x.dtype), intensity)
        m = torch.where(m < 0.8, torch.zeros_like(m), m)
        color = torch.tensor([63, 42, 20], dtype=x.dtype).view(1, 3, 1, 1) / 255 * m
        return (x * (1 - m) + color).clamp(0, 1)
    from urrlkit.evaluate.corruptions.cv_ops import water_mask

    masks = [water_mask(liquid[k, 0].double().numpy()) for k in range(n)]
    m = torch.from_numpy(np.stack(masks)).unsqueeze(1).to(x.dtype)
    m = m / m.amax((2, 3), keepdim=True).clamp_min(1e-12) * intensity
    # the reference concatenates (175, 238, 238)/255 in channel order and adds it to the RGB array as it is
    # (its BGR2BGRA conversions only append alpha): R + 175·m, G + 238·m, B + 238·m
    color = torch.tensor([175, 238, 238], dtype=x.dtype).view(1, 3, 1, 1) / 255
    return (x + m * color).clamp(0, 1)
