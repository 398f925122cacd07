"""torchvision's AutoAugment-style ops (pytorch/vision torchvision/transforms/autoaugment.py ``_apply_op``, on
uint8 tensors through transforms/_functional_tensor.py), batched with a magnitude per sample.

Images are float tensors holding the uint8 grid (values 0…255, integral), as in augmix_ops.py. Each op does the
float32 arithmetic torchvision does on a uint8 tensor — same operations, same order, same truncating cast — so a
fixed-magnitude op equals ``torchvision.transforms.functional`` on the uint8 image exactly
(tests/augment/test_augment_autoaugment.py). Where torchvision's tensor ops differ from PIL's (autocontrast's
float32 scale, grayscale weights 0.2989/0.587/0.114, NEAREST resampling about the pixel-centre grid) we follow
torchvision's tensor ops, not PIL and not augmix_ops.py.

Ops and their magnitude spaces (``OpSpace``): the 14 ops of ``RandAugment`` / ``TrivialAugmentWide``
(Identity, ShearX, ShearY, TranslateX, TranslateY, Rotate, Brightness, Color, Contrast, Sharpness, Posterize,
Solarize, AutoContrast, Equalize), in torchvision's order, which is the order ops are indexed by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from urrlkit.augment.augmix_ops import apply_lut, equalize
from urrlkit.augment.masks import indicator

OP_NAMES = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
            "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
INTERPOLATIONS = ("nearest", "bilinear")


@dataclass(frozen=True)
class OpSpace:
    """An ``_augmentation_space``: per op (OP_NAMES order) its magnitude bins (None: the op takes none) and
    whether a magnitude is negated with probability ½."""

    magnitudes: tuple[tuple[float, ...] | None, ...]
    signed: tuple[bool, ...]


def _bins(values: Tensor) -> tuple[float, ...]:
    # float32 tensors to Python floats: exactly torchvision's ``float(magnitudes[i].item())``.
    return tuple(float(v) for v in values.tolist())


def _space(num_bins: int, shear: float, translate: tuple[float, float], rotate: float, enhance: float,
           posterize_span: int) -> OpSpace:
    lin = torch.linspace
    mags: dict[str, tuple[float, ...] | None] = {
        "Identity": None,
        "ShearX": _bins(lin(0.0, shear, num_bins)),
        "ShearY": _bins(lin(0.0, shear, num_bins)),
        "TranslateX": _bins(lin(0.0, translate[0], num_bins)),
        "TranslateY": _bins(lin(0.0, translate[1], num_bins)),
        "Rotate": _bins(lin(0.0, rotate, num_bins)),
        **{name: _bins(lin(0.0, enhance, num_bins)) for name in ("Brightness", "Color", "Contrast", "Sharpness")},
        "Posterize": _bins(8 - (torch.arange(num_bins) / ((num_bins - 1) / posterize_span)).round().int()),
        "Solarize": _bins(lin(255.0, 0.0, num_bins)),
        "AutoContrast": None,
        "Equalize": None,
    }
    signed = tuple(name in GEOMETRIC or name in ("Brightness", "Color", "Contrast", "Sharpness")
                   for name in OP_NAMES)
    return OpSpace(tuple(mags[name] for name in OP_NAMES), signed)


def rand_augment_space(num_bins: int, height: int, width: int) -> OpSpace:
    """``RandAugment._augmentation_space``: shear 0–0.3, translate 0–150/331 of the side, rotate 0–30°,
    enhance factors 1 ± 0–0.9, posterize 8 → 4 bits, solarize threshold 255 → 0."""
    return _space(num_bins, 0.3, (150.0 / 331.0 * width, 150.0 / 331.0 * height), 30.0, 0.9, 4)


def trivial_augment_wide_space(num_bins: int) -> OpSpace:
    """``TrivialAugmentWide._augmentation_space`` (the "wide" ranges): shear 0–0.99, translate 0–32 px,
    rotate 0–135°, enhance factors 1 ± 0–0.99, posterize 8 → 2 bits, solarize threshold 255 → 0."""
    return _space(num_bins, 0.99, (32.0, 32.0), 135.0, 0.99, 6)


def inverse_affine_matrix(center: tuple[float, float], angle: float, translate: tuple[float, float],
                          shear: tuple[float, float]) -> list[float]:
    """torchvision ``functional._get_inverse_affine_matrix`` at scale 1 (the output → input map that the
    tensor ``affine``/``rotate`` resample through), in the same float64 operations."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [x / 1.0 for x in (d, -b, 0.0, -c, a, 0.0)]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def op_matrix(name: str, magnitude: float, height: int, width: int) -> list[float]:
    """The inverse affine matrix ``_apply_op`` builds for a geometric op at a signed magnitude: ShearX/Y about
    the top-left corner with angle atan(magnitude), TranslateX/Y by int(magnitude) px, Rotate about the centre
    (``F.rotate`` passes −angle)."""
    corner = (-width * 0.5, -height * 0.5)  # F.affine's center=[0, 0], relative to the image centre
    if name == "ShearX":
        return inverse_affine_matrix(corner, 0.0, (0.0, 0.0), (math.degrees(math.atan(magnitude)), 0.0))
    if name == "ShearY":
        return inverse_affine_matrix(corner, 0.0, (0.0, 0.0), (0.0, math.degrees(math.atan(magnitude))))
    if name == "TranslateX":
        return inverse_affine_matrix((0.0, 0.0), 0.0, (float(int(magnitude)), 0.0), (0.0, 0.0))
    if name == "TranslateY":
        return inverse_affine_matrix((0.0, 0.0), 0.0, (0.0, float(int(magnitude))), (0.0, 0.0))
    if name == "Rotate":
        return inverse_affine_matrix((0.0, 0.0), -magnitude, (0.0, 0.0), (0.0, 0.0))
    raise ValueError(f"{name} is not a geometric op")


@dataclass(frozen=True)
class OpTables:
    """Everything a draw indexes, flat over j = (op·bins + bin)·2 + negated: the signed magnitude (float32, as
    the ops read it) and, for geometric ops, the float32 inverse affine matrix (identity for the others)."""

    magnitude: Tensor  # (ops·bins·2,)
    theta: Tensor  # (ops·bins·2, 2, 3)


def op_tables(space: OpSpace, num_bins: int, height: int, width: int, device: torch.device) -> OpTables:
    """Tables for one image size, built on the host in torchvision's float64 arithmetic, then sent once."""
    mags: list[float] = []
    thetas: list[list[float]] = []
    for name, bins, signed in zip(OP_NAMES, space.magnitudes, space.signed, strict=True):
        for k in range(num_bins):
            for negated in (False, True):
                m = 0.0 if bins is None else bins[k]
                m = -m if signed and negated else m
                mags.append(m)
                geo = name in GEOMETRIC
                thetas.append(op_matrix(name, m, height, width) if geo else [1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    return OpTables(torch.tensor(mags, dtype=torch.float32, device=device),
                    torch.tensor(thetas, dtype=torch.float32, device=device).view(-1, 2, 3))


# ------------------------------------------------------------------------------------------- geometric


_BASE_GRIDS: dict[tuple[int, int, torch.device], tuple[Tensor, Tensor]] = {}


def base_grid(height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(1, H·W, 3) homogeneous pixel centres relative to the image centre, as ``_gen_affine_grid`` builds them
    (float32 linspace), and the half sizes (W/2, H/2) it normalises by; cached per size and device, since every
    geometric op reuses them (and a host → device copy per call would synchronise the stream)."""
    key = (height, width, device)
    if key not in _BASE_GRIDS:
        d = 0.5
        base = torch.empty(1, height, width, 3, device=device)
        base[..., 0].copy_(torch.linspace(-width * 0.5 + d, width * 0.5 + d - 1, steps=width, device=device))
        ys = torch.linspace(-height * 0.5 + d, height * 0.5 + d - 1, steps=height, device=device)
        base[..., 1].copy_(ys.unsqueeze_(-1))
        base[..., 2].fill_(1)
        half = torch.tensor([0.5 * width, 0.5 * height], device=device)
        _BASE_GRIDS[key] = (base.view(1, height * width, 3), half)
    return _BASE_GRIDS[key]


def affine_grid(theta: Tensor, height: int, width: int) -> Tensor:
    """torchvision ``_functional_tensor._gen_affine_grid`` for a batch of float32 matrices (B, 2, 3): pixel
    centres relative to the image centre, mapped by theta, normalised by half the size — same float32 operations
    (a batched matmul of the same shapes as its bmm: bit-identical, tested)."""
    base, half = base_grid(height, width, theta.device)
    return torch.matmul(base, theta.transpose(1, 2) / half).view(-1, height, width, 2)


def affine(x: Tensor, theta: Tensor, interpolation: str = "nearest", fill: float | None = None) -> Tensor:
    """``_functional_tensor.affine``/``rotate`` (same size) per sample: grid_sample with zero padding, then
    ``fill`` outside the image (NEAREST: where the resampled mask < 0.5; BILINEAR: blended by the mask), rounded
    back to the grid as the uint8 cast rounds. fill None is torchvision's fill=None (zeros, no mask)."""
    h, w = x.shape[-2:]
    grid = affine_grid(theta, h, w)
    if fill is None:
        out = F.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=False)
        return out if interpolation == "nearest" else out.round_()  # NEAREST copies grid values: no rounding
    ones = torch.ones_like(x[:, :1])
    out = F.grid_sample(torch.cat([x, ones], 1), grid, mode=interpolation, padding_mode="zeros",
                        align_corners=False)
    img, mask = out[:, :-1], out[:, -1:].expand_as(out[:, :-1])
    if interpolation == "nearest":
        img = torch.where(mask < 0.5, torch.full_like(img, fill), img)
    else:
        img = img * mask + (1.0 - mask) * fill
    return img.round_()


# ------------------------------------------------------------------------------------------- colour


def _col(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def blend(img1: Tensor, img2: Tensor | None, magnitude: Tensor) -> Tensor:
    """``_blend(img1, img2, 1 + magnitude)``: trunc((r·img1 + (1 − r)·img2).clamp(0, 255)), r = 1 + m.

    torchvision passes r as a float64 that float32 arithmetic rounds once: fl32(1 + m), which is the float32
    sum; 1 − r = −m exactly (m is a float32 magnitude). img2 None is the black image of adjust_brightness
    (its term adds 0 exactly). Values are ≥ 0 after the clamp, so floor is the uint8 cast's truncation.
    """
    m = _col(magnitude)
    out = img1 * (m + 1)
    if img2 is not None:
        out.add_(img2 * -m)  # two rounded products, then the rounded sum: no fused multiply-add
    return out.clamp_(0, 255).floor_()


def grayscale(x: Tensor) -> Tensor:
    """``rgb_to_grayscale`` of a uint8 image: trunc(0.2989·r + 0.587·g + 0.114·b), (B, 1, H, W)."""
    r, g, b = x.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).floor_().unsqueeze(-3)


def brightness(x: Tensor, m: Tensor) -> Tensor:
    """``adjust_brightness(x, 1 + m)``: blend with black."""
    return blend(x, None, m)


def color(x: Tensor, m: Tensor) -> Tensor:
    """``adjust_saturation(x, 1 + m)``: blend with the grayscale image."""
    return blend(x, grayscale(x), m)


def contrast(x: Tensor, m: Tensor) -> Tensor:
    """``adjust_contrast(x, 1 + m)``: blend with the mean of the (truncated) grayscale image."""
    # The mean's sum is of integers < 2^24 for images up to 256×256, so exact in any order: batched = single.
    return blend(x, torch.mean(grayscale(x), dim=(-3, -2, -1), keepdim=True), m)


def blurred_degenerate(x: Tensor) -> Tensor:
    """``_blurred_degenerate_image``: 3×3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]]/13, rounded, border kept.

    Computed as the exact integer sum S / 13, rounded: torchvision's float32 conv differs from S/13 by a few
    ulps, and S/13 is never within 1/26 of a rounding tie, so both round alike.
    """
    rows = torch.add(x[..., :-2, :], x[..., 1:-1, :]).add_(x[..., 2:, :])
    box = torch.add(rows[..., :-2], rows[..., 1:-1]).add_(rows[..., 2:])
    out = x.clone()
    out[..., 1:-1, 1:-1] = box.add_(x[..., 1:-1, 1:-1], alpha=4).div_(13).round_()
    return out


def sharpness(x: Tensor, m: Tensor) -> Tensor:
    """``adjust_sharpness(x, 1 + m)``: blend with the blurred image over the whole image — the border too,
    where float32 rounding of r·x + (1 − r)·x can move a pixel by one level, exactly as in torchvision."""
    if x.shape[-1] <= 2 or x.shape[-2] <= 2:
        return x
    return blend(x, blurred_degenerate(x), m)


def posterize(x: Tensor, bits: Tensor) -> Tensor:
    """``posterize(x, bits)``: x & −2^(8 − bits), i.e. floor(x / 2^(8 − bits))·2^(8 − bits) (exact)."""
    step = _col(torch.pow(2.0, 8 - bits))
    return torch.div(x, step).floor_().mul_(step)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """``solarize(x, threshold)``: 255 − x where x ≥ threshold."""
    # x + [x ≥ t]·(255 − 2x): exact on the 8-bit grid, and a float mask is several times faster than
    # torch.where's bool one on the CPU (masks.py).
    return torch.addcmul(x, indicator(torch.ge, x, _col(threshold)), x.mul(-2).add_(255))


def autocontrast(x: Tensor) -> Tensor:
    """``autocontrast``: trunc(((x − lo)·scale).clamp(0, 255)) per image and channel, scale = 255/(hi − lo)
    as torchvision computes it (``bound / tensor`` is reciprocal, then multiply); flat channels unchanged.
    Evaluated on the 256 grid values and applied as a table (augmix_ops.apply_lut)."""
    lo = x.amin(dim=(-2, -1)).unsqueeze(-1)  # (B, C, 1)
    hi = x.amax(dim=(-2, -1)).unsqueeze(-1)
    scale = (hi - lo).reciprocal() * 255
    flat = ~torch.isfinite(scale)
    lo = torch.where(flat, torch.zeros_like(lo), lo)
    scale = torch.where(flat, torch.ones_like(scale), scale)
    grid = torch.arange(256, device=x.device, dtype=x.dtype).view(1, 1, 256)
    return apply_lut(x, ((grid - lo) * scale).clamp_(0, 255).floor_())


def equalize_op(x: Tensor) -> Tensor:
    """``equalize``: torchvision's per-channel LUT, the same integer algorithm as PIL's (augmix_ops.equalize)."""
    return equalize(x, x.new_empty(0), x.new_empty(0), torch.Generator())  # equalize draws nothing


def apply_op(name: str, x: Tensor, magnitude: Tensor, theta: Tensor, interpolation: str = "nearest",
             fill: float | None = None) -> Tensor:
    """``_apply_op`` for one op on a batch: per-sample signed magnitudes (B,) and, for geometric ops, the
    matrices (B, 2, 3) that ``op_tables`` holds for them ("Affine": any mix of the geometric ops)."""
    if name in GEOMETRIC or name == "Affine":
        return affine(x, theta, interpolation, fill)
    ops = {"Brightness": brightness, "Color": color, "Contrast": contrast, "Sharpness": sharpness,
           "Posterize": posterize, "Solarize": solarize}
    if name in ops:
        return ops[name](x, magnitude)
    if name == "AutoContrast":
        return autocontrast(x)
    if name == "Equalize":
        return equalize_op(x)
    if name == "Identity":
        return x
    raise ValueError(f"unknown op {name!r}")
