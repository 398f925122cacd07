"""Batched, per-sample colour operations of MoCo v2's T_rep (facebookresearch/moco main_moco.py `--aug-plus`),
on float images in [0, 1].

Semantics are torchvision's tensor functionals (``adjust_brightness`` … ``adjust_hue``, ``rgb_to_grayscale``,
``gaussian_blur``), but every factor is a per-sample tensor instead of one Python float for the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from urrlkit.augment import rand
from urrlkit.augment.groups import copy_rows_, group_rows
from urrlkit.augment.masks import indicator

# ITU-R 601-2 luma, the weights torchvision's rgb_to_grayscale uses.
_LUMA = (0.2989, 0.587, 0.114)


def _col(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def grayscale(x: Tensor) -> Tensor:
    """Luma replicated to 3 channels (torchvision ``rgb_to_grayscale(num_output_channels=3)``)."""
    return luma(x).expand_as(x)


def luma(x: Tensor) -> Tensor:
    """(B, 1, H, W) luma, 0.2989·R + 0.587·G + 0.114·B."""
    r, g, b = x.unbind(dim=1)
    return (r * _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    # torchvision's _blend, factor·x + (1 − factor)·other clamped, as one lerp (equal to float rounding).
    return torch.lerp(other.expand_as(x), x, _col(factor)).clamp_(0, 1)


def brightness(x: Tensor, factor: Tensor) -> Tensor:
    return (x * _col(factor)).clamp_(0, 1)


def contrast(x: Tensor, factor: Tensor) -> Tensor:
    # The mean of the luma image is the luma of the channel means: no full grey image needed.
    m = x.mean(dim=(-2, -1))
    mean = (m[:, 0] * _LUMA[0] + m[:, 1] * _LUMA[1] + m[:, 2] * _LUMA[2]).view(-1, 1, 1, 1)
    return _blend(x, mean, factor)


def saturation(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(x, luma(x), factor)


def hue(x: Tensor, factor: Tensor) -> Tensor:
    """Hue rotation by ``factor`` ∈ [−0.5, 0.5] turns: torchvision's RGB → HSV → shift → RGB, fused.

    With v = max, c = max − min and the shifted hue h′ (in sextants), each channel is
    ``v − c·clamp(min(k, 4 − k), 0, 1)`` with k = (n + h′) mod 6, n = 5, 3, 1 for R, G, B — the closed form
    of HSV → RGB, so the round trip costs a handful of pointwise ops instead of two full conversions
    (kornia's adjust_hue is slower on the CPU, docs/benchmarks.md). Agrees with ``TF.adjust_hue`` to float rounding.
    """
    r, g, b = x.unbind(dim=1)
    # Elementwise max/min and lerps instead of aminmax(dim=1) and torch.where: on the CPU those two are an
    # order of magnitude slower per element than the vectorised binary ops (docs/benchmarks.md).
    maxc = torch.maximum(torch.maximum(r, g), b)
    c = maxc - torch.minimum(torch.minimum(r, g), b)
    # torchvision's branch priority: R if it is the max, else G, else B; the numerator and sextant offset
    # are selected first so that one division serves all three branches.
    is_r = indicator(torch.eq, maxc, r)  # float masks: bool ones cost ~9× more here (masks.py)
    is_g = indicator(torch.eq, maxc, g).sub_(is_r).clamp_(min=0)
    num = torch.lerp(torch.lerp(r - g, b - r, is_g), g - b, is_r)
    off = is_g.mul(-2.0).add_(4.0).mul_(1 - is_r)  # 0 (R), 2 (G), 4 (B)
    # c = 0 means a grey pixel, whose numerator is 0 too: any non-zero divisor gives hue 0, as torchvision.
    h6 = num.div_(c.clamp_min(1e-12)).add_(off).add_(_col(factor).squeeze(1) * 6.0)
    n = torch.arange(5.0, 0.0, -2.0, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)  # 5, 3, 1; no host copy
    k = h6.unsqueeze(1) + n
    k.sub_(k.mul(1 / 6.0).floor_().mul_(6.0))
    w = torch.minimum(k, 4.0 - k).clamp_(0, 1)
    return w.mul_(-c.unsqueeze(1)).add_(maxc.unsqueeze(1)).clamp_(0, 1)


def jitter_params(n: int, g: torch.Generator, brightness_: float = 0.4, contrast_: float = 0.4,
                  saturation_: float = 0.4, hue_: float = 0.1) -> tuple[Tensor, Tensor]:
    """Per-sample ``ColorJitter(b, c, s, h)`` parameters: (factors (n, 4), order (n, 4)).

    Factors are U(max(0, 1 − v), 1 + v) for brightness, contrast and saturation and U(−h, h) for hue; the
    order is a random permutation per sample, as torchvision draws one permutation per call.
    """
    factors = torch.stack([
        rand.uniform(n, max(0.0, 1 - brightness_), 1 + brightness_, g),
        rand.uniform(n, max(0.0, 1 - contrast_), 1 + contrast_, g),
        rand.uniform(n, max(0.0, 1 - saturation_), 1 + saturation_, g),
        rand.uniform(n, -hue_, hue_, g),
    ], dim=1)
    order = torch.rand(n, 4, generator=g, device=g.device).argsort(dim=1)
    return factors, order


_JITTER_OPS = (brightness, contrast, saturation, hue)


def apply_jitter(x: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """Apply the four adjustments in each sample's own order, grouping samples by the op at each position."""
    out = x.clone()
    for groups in group_rows(order.t(), len(_JITTER_OPS)):  # one row per position in the order
        for k, idx in groups:
            copy_rows_(out, idx, _JITTER_OPS[k](out.index_select(0, idx), factors[idx, k]))
    return out


def color_jitter(x: Tensor, g: torch.Generator, brightness_: float = 0.4, contrast_: float = 0.4,
                 saturation_: float = 0.4, hue_: float = 0.1) -> Tensor:
    """torchvision ``ColorJitter(b, c, s, h)`` with independent factors and order per sample."""
    return apply_jitter(x, *jitter_params(x.shape[0], g, brightness_, contrast_, saturation_, hue_))


def blur_kernel_size(sigma_max: float) -> int:
    """Odd kernel covering ±3σ of the widest Gaussian drawn."""
    return 2 * math.ceil(3 * sigma_max) + 1


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """(B, k) normalised 1-D Gaussian taps at offsets −k//2 … k//2, one row per σ (torchvision's kernel)."""
    r = kernel_size // 2
    taps = torch.arange(-r, r + 1, dtype=torch.float32, device=sigma.device)
    pdf = torch.exp(-0.5 * (taps / sigma.float().view(-1, 1)) ** 2)
    return pdf / pdf.sum(dim=1, keepdim=True)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Per-sample isotropic Gaussian blur, reflect border (torchvision ``gaussian_blur`` semantics).

    Separable: the image is reflect-padded once on all sides, then one depthwise row pass and one column pass,
    each a grouped convolution with every (sample, channel) plane its own group. Reflecting the rows before the
    row pass gives the same values as padding between the passes, and saves a pad: faster than kornia's
    ``gaussian_blur2d`` (equal to 3e-7; timings: docs/benchmarks.md).
    """
    b, c, h, w = x.shape
    k = min(kernel_size, 2 * ((min(h, w) - 1) // 2) + 1)  # reflect padding must stay inside the image
    r = k // 2
    weights = gaussian_kernels(sigma, k).to(x.dtype).repeat_interleave(c, dim=0)  # (B·C, k)
    planes = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="reflect")
    rows = F.conv2d(planes, weights.view(b * c, 1, 1, k), groups=b * c)
    return F.conv2d(rows, weights.view(b * c, 1, k, 1), groups=b * c).view(b, c, h, w)
