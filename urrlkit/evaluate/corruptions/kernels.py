"""Building blocks of the corruptions, batched in torch: seeded generators, the reference's filters (scipy,
skimage, OpenCV, Pillow and ImageMagick semantics), zooms, resampling matrices and colour conversions."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# Rand's field `torch` shadows the module inside its class body (for a type checker): these names do not
_Dtype = torch.dtype
_F32 = torch.float32


@dataclass
class Rand:
    """Seeded generators for one batch: torch for tensors, numpy for the few numpy parts."""

    torch: torch.Generator
    np: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> Rand:
        return cls(torch.Generator().manual_seed(seed), np.random.default_rng(seed))

    def uniform(self, lo: float, hi: float, shape: tuple[int, ...], dtype: _Dtype = _F32) -> Tensor:
        return torch.rand(shape, generator=self.torch, dtype=dtype) * (hi - lo) + lo

    def normal(self, shape: tuple[int, ...], loc: float = 0.0, scale: float = 1.0, dtype: _Dtype = _F32) -> Tensor:
        return torch.randn(shape, generator=self.torch, dtype=dtype) * scale + loc


# ----------------------------------------------------------------------------------------------- helpers


def pad_index(n: int, pad_lo: int, pad_hi: int, mode: str) -> torch.Tensor:
    """Source indices for a padded axis of length n: 'nearest' (edge), 'reflect' (scipy: d c b a | a b c d),
    'mirror' (scipy mirror = cv2 REFLECT_101: d c b | a b c d); any pad width."""
    i = torch.arange(-pad_lo, n + pad_hi)
    if mode == "nearest" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect":
        period = 2 * n
        i = i % period
        return torch.where(i < n, i, period - 1 - i)
    if mode == "mirror":
        period = 2 * n - 2
        i = i % period
        return torch.where(i < n, i, period - i)
    raise ValueError(mode)


def pad2d(x: torch.Tensor, ph: int, pw: int, mode: str) -> torch.Tensor:
    h, w = x.shape[-2:]
    x = x.index_select(-2, pad_index(h, ph, ph, mode))
    return x.index_select(-1, pad_index(w, pw, pw, mode))


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's kernel: radius int(truncate·σ + 0.5), exp(−x²/2σ²) normalised."""
    radius = int(truncate * float(sigma) + 0.5)
    xs = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * xs**2 / float(sigma) ** 2)
    return k / k.sum()


def separable(x: torch.Tensor, k: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel of (N, C, H, W) with the 1-D kernel along H and W (scipy/skimage semantics)."""
    n, c, h, w = x.shape
    r = (k.numel() - 1) // 2
    if r == 0:
        return x
    k = k.to(x.dtype)
    m = n * c
    # depthwise (groups = maps) convolutions: far faster on CPU than a batch of one-channel images
    y = pad2d(x, r, r, mode).reshape(1, m, h + 2 * r, w + 2 * r)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(m, 1, -1, 1), groups=m)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(m, 1, 1, -1), groups=m)
    return y.reshape(n, c, h, w)


def gaussian(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian / scipy.ndimage.gaussian_filter over H and W (not channels)."""
    if sigma <= 0:
        return x
    return separable(x, gaussian_kernel1d(sigma, truncate), mode)


def conv2d_same(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """cv2.filter2D (correlation, anchor at the centre) per channel with the given border mode."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    m = n * c
    y = pad2d(x, kh // 2, kw // 2, mode).reshape(1, m, h + kh - 1, w + kw - 1)
    wk = kernel.to(x.dtype).view(1, 1, kh, kw).expand(m, 1, kh, kw)
    return F.conv2d(y, wk, groups=m).reshape(n, c, h, w)


def floor_u8(x: torch.Tensor) -> torch.Tensor:
    """np.uint8(np.clip(v, 0, 1) * 255) in [0, 1] units: truncation, as the reference's intermediate casts."""
    return torch.floor(x.clamp(0, 1) * 255 + 1e-6) / 255


def round_u8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def gray(x: torch.Tensor) -> torch.Tensor:
    """cv2 RGB2GRAY weights."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.rgb2hsv on (N, 3, H, W); ties resolve as skimage does (blue over green over red)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = x.max(1).values
    delta = v - x.min(1).values
    s = torch.where(v == 0, torch.zeros_like(v), delta / torch.where(v == 0, torch.ones_like(v), v))
    safe = torch.where(delta == 0, torch.ones_like(delta), delta)
    h = torch.zeros_like(v)
    h = torch.where(r == v, (g - b) / safe, h)
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(delta == 0, torch.zeros_like(h), h)
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.hsv2rgb."""
    h, s, v = x[:, 0], x[:, 1], x[:, 2]
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    hi = hi.long() % 6
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(x)
    for k, (a, b_, c) in enumerate(table):
        m = hi == k
        out[:, 0] = torch.where(m, a, out[:, 0])
        out[:, 1] = torch.where(m, b_, out[:, 1])
        out[:, 2] = torch.where(m, c, out[:, 2])
    return out


@functools.lru_cache(maxsize=256)
def zoom_matrix(h: int, factor: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(h × h) matrix of the reference's `clipped_zoom` along one axis: centre crop of ceil(h/z) pixels,
    scipy.ndimage.zoom(order=1) to round(ch·z) pixels (grid_mode=False), centre trim back to h."""
    ch = math.ceil(h / factor)
    top = (h - ch) // 2
    out = round(ch * factor)
    trim = (out - h) // 2
    j = torch.arange(h, dtype=torch.float64) + trim
    u = j * (ch - 1) / (out - 1) if out > 1 else torch.zeros_like(j)
    i0 = torch.floor(u).long().clamp(0, ch - 1)
    i1 = (i0 + 1).clamp(max=ch - 1)
    w1 = u - i0
    m = torch.zeros(h, h, dtype=torch.float64)
    rows = torch.arange(h)
    m.index_put_((rows, top + i0), 1 - w1, accumulate=True)
    m.index_put_((rows, top + i1), w1, accumulate=True)
    return m.to(dtype)


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    mh = zoom_matrix(x.shape[-2], factor, x.dtype)
    mw = zoom_matrix(x.shape[-1], factor, x.dtype)
    return torch.einsum("ih,nchw,jw->ncij", mh, x, mw)


@functools.lru_cache(maxsize=64)
def pil_resample_matrix(n_in: int, n_out: int, kind: str = "box") -> torch.Tensor:
    """Pillow's coefficients (precompute_coeffs), BOX or BILINEAR, as an (n_out × n_in) matrix."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = (0.5 if kind == "box" else 1.0) * filterscale
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        ws = []
        for xx in range(xmin, xmax):
            t = (xx - center + 0.5) / filterscale
            w = (1.0 if -0.5 < t <= 0.5 else 0.0) if kind == "box" else max(0.0, 1.0 - abs(t))
            ws.append(w)
        total = sum(ws)
        for k, w in enumerate(ws):
            m[i, xmin + k] = w / total if total else 0.0
    return m


def pil_resize(x255: torch.Tensor, size: tuple[int, int], kind: str = "box") -> torch.Tensor:
    """Pillow `Image.resize` on uint8-valued float batches (0..255): horizontal pass, round, vertical pass,
    round (Pillow works in 8-bit between passes)."""
    h, w = x255.shape[-2:]
    oh, ow = size
    y = x255
    if ow != w:
        y = torch.einsum("nchw,jw->nchj", y.double(), pil_resample_matrix(w, ow, kind)).round().clamp(0, 255)
    if oh != h:
        y = torch.einsum("nchw,ih->nciw", y.double(), pil_resample_matrix(h, oh, kind)).round().clamp(0, 255)
    return y.to(x255.dtype)


def motion_kernel(radius: float, sigma: float) -> torch.Tensor:
    """ImageMagick MotionBlurImage: width 2·ceil(radius)+1, one-sided Gaussian weights, normalised."""
    width = int(2 * math.ceil(radius) + 1)
    i = torch.arange(width, dtype=torch.float64)
    k = torch.exp(-(i**2) / (2 * sigma**2))
    return k / k.sum()


def motion_blur_batch(x: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """Per-image motion blur along `angles_deg` (ImageMagick semantics, edge virtual pixels):
    out(y, x) = Σ_i k_i · img(y + ceil(i·sin θ − ½), x + ceil(i·cos θ − ½))."""
    n, c, h, w = x.shape
    k = motion_kernel(radius, sigma)
    theta = torch.deg2rad(angles_deg.double())  # angles drawn in float32, as offsets need no more
    c = x.shape[1]
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    rows, cols = torch.arange(h), torch.arange(w)
    for i in range(k.numel()):
        oy = torch.ceil(i * torch.sin(theta) - 0.5).long()
        ox = torch.ceil(i * torch.cos(theta) - 0.5).long()
        r = (rows.view(1, h) + oy.view(n, 1)).clamp(0, h - 1)  # (n, h)
        cc = (cols.view(1, w) + ox.view(n, 1)).clamp(0, w - 1)  # (n, w)
        lin = (r.view(n, h, 1) * w + cc.view(n, 1, w)).view(n, 1, h * w).expand(n, c, h * w)
        out += float(k[i]) * torch.gather(flat, 2, lin)
    return out.view(n, c, h, w)


def bilinear_sample(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, mode: str) -> torch.Tensor:
    """Sample (N, C, H, W) at per-image float coordinates rows/cols (N, H, W), order-1 interpolation.
    mode 'mirror': cv2 BORDER_REFLECT_101 on neighbour indices; 'reflect': scipy map_coordinates
    (the coordinate is folded half-sample-symmetrically, neighbours clamped)."""
    n, c, h, w = x.shape

    def fold(u: torch.Tensor, size: int) -> torch.Tensor:
        period = 2 * size
        u = torch.remainder(u + 0.5, period) - 0.5
        return torch.where(u > size - 0.5, period - 1 - u, u)

    if mode == "reflect":
        rows, cols = fold(rows, h), fold(cols, w)
    r0, c0 = torch.floor(rows), torch.floor(cols)
    fr, fc = rows - r0, cols - c0
    r0, c0 = r0.long(), c0.long()

    def idx(i: torch.Tensor, size: int) -> torch.Tensor:
        if mode == "mirror":
            table = pad_index(size, 4 * size, 4 * size, "mirror")
            return table[(i + 4 * size).clamp(0, table.numel() - 1)]
        return i.clamp(0, size - 1)

    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(x)
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            lin = (idx(r0 + dr, h) * w + idx(c0 + dc, w)).view(n, 1, h * w).expand(n, c, h * w)
            out += torch.gather(flat, 2, lin).view(n, c, h, w) * (wr * wc).unsqueeze(1).to(x.dtype)
    return out
