"""AugMix's primitive operations (google-research/augmix ``augmentations.py``; Hendrycks et al. 2020), batched.

Chains run on float tensors holding the uint8 grid (values 0…255, integral), because the reference chains
are PIL images: every op reads and writes 8-bit pixels. Keeping the grid lets each op reproduce PIL's
rounding (truncating blends, integer LUTs) so that a fixed-parameter op equals ``ImageOps``/``ImageEnhance``.

Every op has the signature ``op(x, level, sign, g) -> x`` with per-sample ``level`` ∈ [0.1, severity] and
``sign`` ∈ {−1, +1} (used by the geometric ops only); strengths follow the reference exactly:
``int_parameter(level, maxval) = int(level·maxval/10)``, ``float_parameter = level·maxval/10``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from urrlkit.augment import color, geometry, rand
from urrlkit.augment.masks import indicator, mask_dtype, within

Op = Callable[[Tensor, Tensor, Tensor, torch.Generator], Tensor]


def _col(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def int_parameter(level: Tensor, maxval: float) -> Tensor:
    return torch.trunc(level * maxval / 10)


def float_parameter(level: Tensor, maxval: float) -> Tensor:
    return level * maxval / 10


def pil_luma(x: Tensor) -> Tensor:
    """PIL ``convert('L')`` in fixed point: (R·19595 + G·38470 + B·7471 + 2¹⁵) >> 16 (exact in float32)."""
    # Every intermediate is an integer < 2²⁴ and 65536 a power of two, so float32 is exact in any order.
    r, g, b = x.unbind(dim=1)
    acc = r * 19595
    return acc.add_(g, alpha=38470).add_(b, alpha=7471).add_(32768).mul_(1 / 65536).floor_().unsqueeze(1)


def pil_blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL ``Image.blend(degenerate, x, factor)``: truncation of d + f·(x − d), clipped to [0, 255].

    Same float32 operations in the same order; floor replaces trunc because the two differ only below 0,
    where the clip maps both to 0.
    """
    return (x - degenerate).mul_(_col(factor)).add_(degenerate).floor_().clamp_(0, 255)


def lut_indices(x: Tensor) -> Tensor:
    """Flat int32 indices (b·C + c)·256 + x[b, c, …] of x on the 8-bit grid into a flattened (B, C, 256) table.

    int32, not int64: on the CPU the int64 cast and add cost several times more than the table lookup itself.
    """
    b, c = x.shape[:2]
    rows = torch.arange(b * c, device=x.device, dtype=torch.int32).unsqueeze(1) * 256
    return (x.reshape(b * c, -1).to(torch.int32) + rows).view(-1)


def channel_histograms(flat: Tensor, channels: int, scatter: bool | None = None) -> Tensor:
    """(channels, 256) int64 counts of ``lut_indices`` output. ``bincount`` on the CPU (faster than
    ``scatter_add``, docs/benchmarks.md); ``scatter_add`` on a GPU (``scatter=None``), where bincount reads its
    max back to the host."""
    if scatter if scatter is not None else flat.is_cuda:
        ones = torch.ones(1, dtype=torch.int64, device=flat.device).expand(flat.numel())
        hist = torch.zeros(channels * 256, dtype=torch.int64, device=flat.device).scatter_add_(0, flat.long(), ones)
    else:
        hist = torch.bincount(flat, minlength=channels * 256)
    return hist.view(channels, 256)


def apply_lut(x: Tensor, lut: Tensor, flat: Tensor | None = None) -> Tensor:
    """out[b, c, …] = lut[b, c, x[b, c, …]] for x on the 8-bit grid and a (B, C, 256) table; ``flat`` reuses
    ``lut_indices(x)``."""
    flat = lut_indices(x) if flat is None else flat
    return lut.reshape(-1).index_select(0, flat).view_as(x)


# ------------------------------------------------------------------------------------------- pointwise


def autocontrast(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """``ImageOps.autocontrast`` (cutoff 0): LUT int((v − lo)·255/(hi − lo)) per channel; flat kept."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    flat = hi <= lo
    # PIL builds the LUT in float64 as int(v·scale − lo·scale); the same IEEE operations give the same
    # truncation. (A Python scalar divided by a tensor goes through a reciprocal, so divide two tensors.)
    # The LUT is built on the 256 grid values (per image and channel) and applied by a gather, so float64
    # touches 256 entries per channel instead of every pixel.
    span = torch.where(flat, torch.ones_like(hi), hi - lo).double()
    scale = torch.full_like(span, 255.0) / span
    grid = torch.arange(256, device=x.device, dtype=torch.float64).view(1, 1, 256)
    lut = torch.floor(grid * scale.flatten(2) - lo.double().flatten(2) * scale.flatten(2)).clamp_(0, 255)
    lut = torch.where(flat.flatten(2), grid, lut).to(x.dtype)  # (B, C, 256); flat channels keep identity
    return apply_lut(x, lut)


def equalize(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """``ImageOps.equalize`` per image and channel: PIL's LUT ``(step // 2 + Σ_{j<v} hist[j]) // step`` with
    ``step = (pixels − count of the channel's top value) // 255``; a channel with step 0 is left as is.

    Same integer algorithm as torchvision's batched kernel, but on the float 8-bit grid the chains hold: no
    float → uint8 → float round trip (the float → uint8 cast alone cost a third of the op on the CPU).
    """
    b, c = x.shape[:2]
    flat = lut_indices(x)
    hist = channel_histograms(flat, b * c)
    cum = hist.cumsum(1)
    top = cum.argmax(1, keepdim=True)  # first index reaching the total: the channel's highest value
    step = (x[0].numel() // c - hist.gather(1, top)).div_(255, rounding_mode="floor")
    lut = (cum[:, :-1] + step // 2).div_(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut], 1)
    identity = torch.arange(256, device=x.device).expand_as(lut)
    lut = torch.where(step > 0, lut, identity).to(x.dtype)  # (b·c, 256): tiny, so where is cheap here
    return apply_lut(x, lut, flat)


def posterize(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """Keep 4 − int(level·4/10) bits (``ImageOps.posterize``: v & ~(2^(8−bits) − 1))."""
    bits = 4 - int_parameter(level, 4)
    step = _col(torch.pow(2.0, 8 - bits))
    return torch.div(x, step).floor_().mul_(step)  # powers of two: exact


def solarize(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """Invert pixels ≥ 256 − int(level·256/10) (``ImageOps.solarize``)."""
    thr = _col(256 - int_parameter(level, 256))
    # x + [x ≥ thr]·(255 − 2x), exact on the 8-bit grid; torch.where is slower on the CPU.
    return torch.addcmul(x, indicator(torch.ge, x, thr), x.mul(-2).add_(255))


# ------------------------------------------------------------------------------------------- geometric


def _affine(x: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor, e: Tensor, f: Tensor) -> Tensor:
    """PIL ``transform(AFFINE, (a, b, c, d, e, f), BILINEAR)``, fill 0, rounded back to the 8-bit grid."""
    m = torch.stack([torch.stack([a, b, c], -1), torch.stack([d, e, f], -1)], dim=1)
    return geometry.warp(x, m, (x.shape[-2], x.shape[-1]), edges="pil").add_(1e-3).floor_().clamp_(0, 255)


def _translate(x: Tensor, t: Tensor, dim: int) -> Tensor:
    """AFFINE translation by an integer per sample along ``dim`` (−1: x, −2: y), fill 0.

    Integer offsets put every PIL sample point on a pixel centre, so the bilinear transform is an exact
    shift: out[…, u] = x[…, u + t] where 0 ≤ u + t < size, else 0 — done as a gather, no resampling.
    Vertical shifts move whole rows (``geometry.shift_rows``).
    """
    if dim == -2:
        return geometry.shift_rows(x, t)
    n = x.shape[dim]
    src = torch.arange(n, device=x.device).view(1, n) + t.to(torch.int64).view(-1, 1)  # (B, n)
    valid = within(src, 0, n, mask_dtype(x))  # (B, n); a float mask for float x, see masks.py
    shape = [x.shape[0], 1, 1, 1]
    shape[dim] = n
    idx = src.clamp_(0, n - 1).view(shape).expand_as(x)
    return x.gather(dim, idx).mul_(valid.view(shape))


def rotate(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """``img.rotate(±int(level·30/10)°, BILINEAR)`` about the centre (w/2, h/2), PIL's inverse matrix."""
    deg = int_parameter(level, 30) * sign
    a = -torch.deg2rad(deg)
    cos, sin = torch.cos(a), torch.sin(a)
    h, w = x.shape[-2:]
    cx, cy = w / 2, h / 2
    return _affine(x, cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)


def shear_x(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """AFFINE (1, ±level·0.3/10, 0, 0, 1, 0): shear about the top-left corner, as the reference does."""
    s = float_parameter(level, 0.3) * sign
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    return _affine(x, one, s, zero, zero, one, zero)


def shear_y(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    s = float_parameter(level, 0.3) * sign
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    return _affine(x, one, zero, zero, s, one, zero)


def translate_x(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """AFFINE (1, 0, ±int(level·(size/3)/10), 0, 1, 0); size is the chain's image size (IMAGE_SIZE)."""
    return _translate(x, int_parameter(level, x.shape[-1] / 3) * sign, -1)


def translate_y(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    return _translate(x, int_parameter(level, x.shape[-2] / 3) * sign, -2)


# ---------------------------------------------------------------------------------------- enhance (AllOp)


def _enhance_factor(level: Tensor) -> Tensor:
    # 0.1 + 1.8·level/10: ≤ 0.64 at severity 3, so the reference only ever weakens these properties.
    return float_parameter(level, 1.8) + 0.1


def color_op(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """``ImageEnhance.Color``: blend with the PIL luma image."""
    return pil_blend(pil_luma(x), x, _enhance_factor(level))


def contrast_op(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """``ImageEnhance.Contrast``: blend with the constant int(mean luma + 0.5)."""
    mean = torch.floor(pil_luma(x).mean(dim=(-3, -2, -1), keepdim=True) + 0.5)
    return pil_blend(mean, x, _enhance_factor(level))


def brightness_op(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """``ImageEnhance.Brightness``: blend with black."""
    # blend with 0: d + f·(x − d) = f·x exactly
    return (x * _col(_enhance_factor(level))).floor_().clamp_(0, 255)


def sharpness_op(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """``ImageEnhance.Sharpness``: blend with ``ImageFilter.SMOOTH`` (1-px border left unfiltered)."""
    # SMOOTH = [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 = (3×3 box sum + 4·centre) / 13; the box sum is
    # separable, which is much cheaper than a depthwise conv2d on the CPU.
    # All sums are small integers (exact); only the interior differs from x, so blend only there.
    rows = torch.add(x[..., :-2, :], x[..., 1:-1, :]).add_(x[..., 2:, :])
    box = torch.add(rows[..., :-2], rows[..., 1:-1]).add_(rows[..., 2:])
    smooth = box.add_(x[..., 1:-1, 1:-1], alpha=4).div_(13).round_()
    out = x.clone()
    inner = x[..., 1:-1, 1:-1]
    f = _col(_enhance_factor(level))
    out[..., 1:-1, 1:-1] = (inner - smooth).mul_(f).add_(smooth).floor_().clamp_(0, 255)
    return out


# ---------------------------------------------------------------------------------- MoCo v2 colour ops


def moco_jitter(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """MoCo v2's ColorJitter(0.4, 0.4, 0.4, 0.1) as one chain op (AugMix (MoCo)); level is unused."""
    return (color.color_jitter(x / 255, g) * 255).round_()


def moco_grayscale(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """MoCo v2's grayscale as one chain op (PIL luma, as the reference RandomGrayscale on PIL images)."""
    return pil_luma(x).expand_as(x).contiguous()


def moco_blur(x: Tensor, level: Tensor, sign: Tensor, g: torch.Generator) -> Tensor:
    """MoCo v2's Gaussian blur, σ ~ U(0.1, 2), as one chain op; level is unused."""
    sigma = rand.uniform(x.shape[0], 0.1, 2.0, g)
    return color.gaussian_blur(x, sigma, color.blur_kernel_size(2.0)).round_().clamp_(0, 255)


AUGMENTATIONS: dict[str, Op] = {
    "autocontrast": autocontrast,
    "equalize": equalize,
    "posterize": posterize,
    "rotate": rotate,
    "solarize": solarize,
    "shear_x": shear_x,
    "shear_y": shear_y,
    "translate_x": translate_x,
    "translate_y": translate_y,
}
"""The reference ``augmentations`` list (9 ops)."""

AUGMENTATIONS_ALL: dict[str, Op] = {
    **AUGMENTATIONS,
    "color": color_op,
    "contrast": contrast_op,
    "brightness": brightness_op,
    "sharpness": sharpness_op,
}
"""The reference ``augmentations_all`` list (AllOp, 13 ops)."""

MOCO_OPS: dict[str, Op] = {
    "color_jitter": moco_jitter,
    "grayscale": moco_grayscale,
    "gaussian_blur": moco_blur,
}
"""MoCo v2 colour operations that AugMix (MoCo) adds to the chains (paper §3.1)."""

__all__ = ["AUGMENTATIONS", "AUGMENTATIONS_ALL", "MOCO_OPS", "Op"]
