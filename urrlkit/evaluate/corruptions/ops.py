"""The 19 corruptions of Hendrycks & Dietterich (2019), batched in torch.

Every op takes a float batch `x` (N, 3, H, W) in [0, 1] (decoded from uint8, as the reference's PIL input),
the severity 1..5 and a `Rand` (seeded torch and numpy generators), and returns a float batch in [0, 1].
`urrlkit.evaluate.corruptions.corrupt` quantises the result the way the reference saves it (`np.uint8`,
i.e. truncation). Parameters come from `params.PARAMS` by size class. numpy/scipy are used only where the
reference's operation is inherently sequential (glass blur's pixel walk) or has no torch equivalent
(spatter's edge/distance maps); JPEG goes through torchvision's libjpeg bindings.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from urrlkit.evaluate.corruptions.params import param, size_class


@dataclass
class Rand:
    """Seeded generators for one batch: torch for tensors, numpy for the few numpy parts."""

    torch: torch.Generator
    np: np.random.Generator

    @classmethod
    def from_seed(cls, seed: int) -> Rand:
        return cls(torch.Generator().manual_seed(seed), np.random.default_rng(seed))

    def uniform(
        self, lo: float, hi: float, shape: tuple[int, ...], dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        return torch.rand(shape, generator=self.torch, dtype=dtype) * (hi - lo) + lo

    def normal(
        self, shape: tuple[int, ...], loc: float = 0.0, scale: float = 1.0, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
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
            for i, hh in enumerate(hs):
                for j, ww in enumerate(ws):
                    a[:, hh, ww] = a[b, hh + o[i, j, :, 1], ww + o[i, j, :, 0]]
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
    from urrlkit.evaluate.corruptions.textures import frost_textures

    a, b = param("frost", severity, x.shape[-1])
    n, _, h, w = x.shape
    base = 32 if size_class(h) == "cifar" else 224
    scale = param("frost_scale", 1, h) * h / base
    textures = frost_textures(scale)
    pick = rng.np.integers(0, len(textures), size=n)
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
    """Water (severities with mud = 0) or mud splashes. The water branch's Canny edges, distance transform
    and histogram equalisation (OpenCV in the reference) are approximated with numpy/scipy (documented)."""
    loc, scale, sigma, thresh, intensity, mud = param("spatter", severity, x.shape[-1])
    n, _, h, w = x.shape
    liquid = gaussian(rng.normal((n, 1, h, w), loc=loc, scale=scale).to(x.dtype), sigma)
    liquid = torch.where(liquid < thresh, torch.zeros_like(liquid), liquid)
    if mud:
        m = gaussian((liquid > thresh).to(x.dtype), intensity)
        m = torch.where(m < 0.8, torch.zeros_like(m), m)
        color = torch.tensor([63, 42, 20], dtype=x.dtype).view(1, 3, 1, 1) / 255 * m
        return (x * (1 - m) + color).clamp(0, 1)
    from scipy import ndimage

    masks = []
    for k in range(n):
        lq = np.floor(liquid[k, 0].numpy() * 255).clip(0, 255).astype(np.uint8)
        gx, gy = ndimage.sobel(lq.astype(np.float64), 1), ndimage.sobel(lq.astype(np.float64), 0)
        edges = np.hypot(gx, gy) > 150
        dist = ndimage.distance_transform_edt(~edges)
        dist = np.minimum(dist, 20)
        dist = ndimage.uniform_filter(dist, 3, mode="mirror").astype(np.uint8)
        hist = np.bincount(dist.ravel(), minlength=256).cumsum()
        nz = hist[hist > 0][0]
        lut = np.round((hist - nz) / max(hist[-1] - nz, 1) * 255).clip(0, 255)
        dist = lut[dist]
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        dist = np.clip(ndimage.correlate(dist, ker, mode="mirror"), 0, 255)
        dist = ndimage.uniform_filter(dist, 3, mode="mirror")
        masks.append(lq.astype(np.float64) / 255 * dist)
    m = torch.from_numpy(np.stack(masks)).unsqueeze(1).to(x.dtype)
    m = m / m.amax((2, 3), keepdim=True).clamp_min(1e-12) * intensity
    color = torch.tensor([238, 238, 175], dtype=x.dtype).view(1, 3, 1, 1) / 255  # pale turquoise (RGB)
    return (x + m * color).clamp(0, 1)


# ----------------------------------------------------------------------------------------------- digital


def contrast(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    c = param("contrast", severity, x.shape[-1])
    means = x.mean((2, 3), keepdim=True)
    return ((x - means) * c + means).clamp(0, 1)


def brightness(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    c = param("brightness", severity, x.shape[-1])
    hsv = rgb_to_hsv(x.double())
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return hsv_to_rgb(hsv).to(x.dtype).clamp(0, 1)


def saturate(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    a, b = param("saturate", severity, x.shape[-1])
    hsv = rgb_to_hsv(x.double())
    hsv[:, 1] = (hsv[:, 1] * a + b).clamp(0, 1)
    return hsv_to_rgb(hsv).to(x.dtype).clamp(0, 1)


def jpeg_compression(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """libjpeg through torchvision.io (batched lists), the same library and defaults (4:2:0) Pillow uses."""
    from torchvision.io import decode_jpeg, encode_jpeg

    q = param("jpeg_compression", severity, x.shape[-1])
    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to torchcodec
        out = decode_jpeg(encode_jpeg(list(u8), quality=q))
    return torch.stack(out).to(x.dtype) / 255


def pixelate(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """Pillow BOX down to int(size·c), BOX back up (both passes in Pillow's 8-bit arithmetic)."""
    c = param("pixelate", severity, x.shape[-1])
    h, w = x.shape[-2:]
    y = (x * 255).round()
    y = pil_resize(y, (int(h * c), int(w * c)), "box")
    y = pil_resize(y, (h, w), "box")
    return y / 255


def elastic_transform(x: torch.Tensor, severity: int, rng: Rand) -> torch.Tensor:
    """Random affine (cv2.warpAffine, bilinear, REFLECT_101) then a smooth random displacement field
    (scipy map_coordinates order 1, mode 'reflect'); α, σ and the affine range scale with the image size."""
    fa, fs, fc = param("elastic_transform", severity, x.shape[-1])
    n, _, h, w = x.shape
    size = h
    alpha, sigma, aff = fa * size, fs * size, fc * size
    center = torch.tensor([h // 2, w // 2], dtype=torch.float64)  # np.float32(shape) // 2
    sq = min(h, w) // 3
    pts1 = torch.stack(
        [center + sq, torch.stack([center[0] + sq, center[1] - sq]), center - sq]
    )  # (3, 2) (x, y)
    pts2 = pts1.unsqueeze(0) + rng.uniform(-aff, aff, (n, 3, 2)).double()
    # affine M with M·[p1; 1] = p2, then the inverse map dst → src (cv2 inverts M internally)
    src = torch.cat([pts1, torch.ones(3, 1, dtype=torch.float64)], 1)  # (3, 3)
    mt = torch.linalg.solve(src.unsqueeze(0).expand(n, 3, 3), pts2)  # (n, 3, 2): [x y 1] @ mt = p2
    full = torch.zeros(n, 3, 3, dtype=torch.float64)
    full[:, :2, :] = mt.transpose(1, 2)
    full[:, 2, 2] = 1
    inv = torch.linalg.inv(full)
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    pts = torch.stack([xx, yy, torch.ones_like(xx)], -1).view(1, h * w, 3)
    srcp = pts @ inv.transpose(1, 2)  # (n, hw, 3)
    sx = srcp[..., 0].view(n, h, w)
    sy = srcp[..., 1].view(n, h, w)
    warped = bilinear_sample(x, sy.to(x.dtype), sx.to(x.dtype), "mirror")

    def field() -> torch.Tensor:
        u = rng.uniform(-1, 1, (n, 1, h, w))
        return (gaussian(u, sigma, mode="reflect", truncate=3) * alpha)[:, 0]

    dx = field()
    dy = field()
    out = bilinear_sample(
        warped, yy.to(x.dtype).unsqueeze(0) + dy, xx.to(x.dtype).unsqueeze(0) + dx, "reflect"
    )
    return out.to(x.dtype).clamp(0, 1)


OPS = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "spatter": spatter,
    "saturate": saturate,
}
