"""Batched, per-sample geometric primitives: crops, flips and affine warps through one `grid_sample`.

Every warp is expressed as a per-sample 2×3 matrix that maps an output pixel's continuous coordinate (pixel
``i`` covers ``[i, i + 1)``, centre ``i + 0.5``) to the input's continuous coordinate — the convention of
PIL's ``Image.transform(AFFINE)``, which the AugMix reference ops use. Crops, flips and resizes are the same
kind of matrix, so a crop + flip + resize is one resampling pass for the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from urrlkit.augment import rand
from urrlkit.augment.masks import mask_dtype, within


def _out_centres(h: int, w: int, device: torch.device) -> Tensor:
    """(h·w, 3) homogeneous continuous coordinates of output pixel centres."""
    ys = torch.arange(h, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=device, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)


def warp(x: Tensor, matrix: Tensor, size: tuple[int, int], *, edges: str = "zeros",
         box: Tensor | None = None) -> Tensor:
    """Bilinear resampling of each image ``x[b]`` through its own affine ``matrix[b]`` (B, 2, 3).

    ``matrix`` maps output continuous coordinates to input continuous coordinates. ``edges``:
    ``zeros`` — outside is black, blended in the half-pixel band along the edge (exact for integer shifts,
    e.g. a zero-padded crop); ``border`` — edge replication, as ``F.interpolate`` / torchvision's
    ``resized_crop`` (a crop box never leaves the image); ``pil`` — PIL's bilinear ``transform``: a point
    inside ``[0, W) × [0, H)`` interpolates with edge replication, a point outside is filled with 0.
    ``box`` (B, 4) = (left, top, width, height): clamp sample points to the box's outer pixel centres, i.e.
    crop first and resize the crop with edge replication, as torchvision's and PIL's ``resized_crop`` do.
    """
    if edges not in ("zeros", "border", "pil"):
        raise ValueError(f"edges must be zeros, border or pil; got {edges!r}")
    b, _, hin, win = x.shape
    hout, wout = size
    # Continuous input coordinates of the output pixel centres, (B, H, W, 2): an affine map is the sum of a
    # row term and a column term, so it is built from (B, H) and (B, W) vectors by one broadcast add.
    m = matrix.to(torch.float32)
    xs = torch.arange(wout, device=x.device, dtype=torch.float32) + 0.5
    ys = torch.arange(hout, device=x.device, dtype=torch.float32) + 0.5
    col = xs.view(1, 1, wout) * m[:, :, 0:1] + m[:, :, 2:3]  # (B, 2, W)
    row = ys.view(1, 1, hout) * m[:, :, 1:2]  # (B, 2, H)
    src = (col[:, :, None, :] + row[:, :, :, None]).permute(0, 2, 3, 1)  # (B, H, W, 2)
    if box is not None:
        lo = box[:, None, None, :2].float() + 0.5
        src = torch.maximum(src, lo)
        src = torch.minimum(src, lo + box[:, None, None, 2:].float() - 1, out=src)
    inside = None
    if edges == "pil":
        sx, sy = src.unbind(-1)
        inside = within(sx, 0, win).mul_(within(sy, 0, hin))  # float masks, see masks.py
    scale = torch.full((2,), 2.0 / win, device=x.device)  # not torch.tensor([...]): a host→GPU copy syncs
    if hin != win:
        scale[1] = 2.0 / hin
    grid = src.mul(scale).sub_(1.0)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros" if edges == "zeros" else "border",
                        align_corners=False)
    if inside is not None:
        out.mul_(inside.view(b, 1, hout, wout))
    return out


def resized_crop(x: Tensor, top: Tensor, left: Tensor, h: Tensor, w: Tensor, size: int,
                 flip: Tensor | None = None, *, edges: str = "border", clamp_to_box: bool = True) -> Tensor:
    """``warp(x, crop_matrix(top, left, h, w, size, flip), (size, size), edges, box)`` without the dense grid
    arithmetic: an axis-aligned crop's sample points are separable (x depends on the column only, y on the
    row only), so the coordinates and the box clamp are computed on (B, size) vectors and broadcast once.
    ``clamp_to_box`` clamps to the box (torchvision's ``resized_crop``); off, ``edges`` decides outside.
    """
    b, _, hin, win = x.shape
    u = torch.arange(size, device=x.device, dtype=torch.float32) + 0.5
    sx = w.float().div(size).view(-1, 1)
    sy = h.float().div(size).view(-1, 1)
    tx = left.float().view(-1, 1)
    ty = top.float().view(-1, 1)
    if flip is not None:
        f = flip.view(-1, 1)
        tx = torch.where(f, tx + w.float().view(-1, 1), tx)
        sx = torch.where(f, -sx, sx)
    # Same float operations as warp's matmul of crop_matrix (the zero terms add exactly 0).
    gx = u * sx + tx  # (B, size)
    gy = u * sy + ty
    if clamp_to_box:
        lx = left.float().view(-1, 1) + 0.5
        ly = top.float().view(-1, 1) + 0.5
        gx = torch.minimum(torch.maximum(gx, lx), lx + w.float().view(-1, 1) - 1)
        gy = torch.minimum(torch.maximum(gy, ly), ly + h.float().view(-1, 1) - 1)
    gx = gx.mul_(2.0 / win).sub_(1.0)
    gy = gy.mul_(2.0 / hin).sub_(1.0)
    grid = torch.stack([gx[:, None, :].expand(b, size, size), gy[:, :, None].expand(b, size, size)], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=edges, align_corners=False)


def crop_matrix(top: Tensor, left: Tensor, h: Tensor, w: Tensor, size: int,
                flip: Tensor | None = None) -> Tensor:
    """(B, 2, 3) matrices resizing the box (top, left, h, w) of each input to size×size, optionally mirrored.

    Output coordinate u ∈ [0, size) maps to ``left + u·w/size`` — the align_corners=False convention that
    torchvision's ``resized_crop`` and PIL's ``resize`` use — and a flipped sample reads ``size − u``.
    """
    sx = w.float() / size
    sy = h.float() / size
    zeros = torch.zeros_like(sx)
    tx = left.float()
    if flip is not None:
        tx = torch.where(flip, tx + w.float(), tx)
        sx = torch.where(flip, -sx, sx)
    row0 = torch.stack([sx, zeros, tx], dim=-1)
    row1 = torch.stack([zeros, sy, top.float()], dim=-1)
    return torch.stack([row0, row1], dim=1)


def rrc_params(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
               g: torch.Generator, attempts: int = 10) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision ``RandomResizedCrop.get_params`` for n samples of one (height, width) at once: (top, left,
    h, w) int64 tensors. See ``rrc_boxes``."""
    size = torch.full((n,), 1, dtype=torch.int64, device=g.device)
    return rrc_boxes(size * height, size * width, scale, ratio, g, attempts)


def rrc_boxes(heights: Tensor, widths: Tensor, scale: tuple[float, float], ratio: tuple[float, float],
              g: torch.Generator, attempts: int = 10) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision ``RandomResizedCrop.get_params`` for n images of sizes (heights[i], widths[i]) at once:
    (top, left, h, w) int64 tensors.

    Same algorithm: up to 10 draws of (area ~ U(scale)·H·W, log-ratio ~ U(log ratio)), the first box that fits
    wins, else the central fallback (the whole image, or its centre at the clamped ratio). All attempts are drawn
    up front, so the random stream differs from torchvision's, not the distribution.
    """
    n = heights.shape[0]
    height = heights.to(device=g.device, dtype=torch.int64).view(n, 1)
    width = widths.to(device=g.device, dtype=torch.int64).view(n, 1)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    target = rand.uniform(n * attempts, scale[0], scale[1], g).view(n, attempts) * (height * width)
    aspect = torch.exp(rand.uniform(n * attempts, log_r[0], log_r[1], g).view(n, attempts))
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.float().argmax(dim=1, keepdim=True)  # index of the first fitting attempt (0 when none fits)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    height, width = height.squeeze(1), width.squeeze(1)
    # The central-crop fallback of torchvision when none of the attempts fits; Python's round() and
    # torch.round both round half to even.
    in_ratio = width.double() / height.double()
    fw = torch.where(in_ratio > ratio[1], torch.round(height.double() * ratio[1]).long(), width)
    fh = torch.where(in_ratio < ratio[0], torch.round(width.double() / ratio[0]).long(), height)
    any_ok = ok.any(dim=1)
    w = torch.where(any_ok, w, fw)
    h = torch.where(any_ok, h, fh)
    u = torch.rand(n, 2, generator=g, device=g.device)
    top = torch.where(any_ok, (u[:, 0] * (height - h + 1)).long().minimum(height - h), (height - h) // 2)
    left = torch.where(any_ok, (u[:, 1] * (width - w + 1)).long().minimum(width - w), (width - w) // 2)
    return top, left, h, w


def random_resized_crop(x: Tensor, size: int, g: torch.Generator, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True) -> Tensor:
    """Per-sample RandomResizedCrop (+ horizontal flip with p = 0.5) in one bilinear pass.

    Bilinear without antialiasing: identical to torchvision whenever the crop is upsampled (always at ≤ 64 px
    stored size); a crop larger than ``size`` (e.g. from 256-px storage to 224) is downsampled ≤ 1.15× without
    the antialias filter.
    """
    n, _, hgt, wid = x.shape
    top, left, h, w = rrc_params(n, hgt, wid, scale, ratio, g)
    flips = rand.bernoulli(n, 0.5, g) if flip else None
    return resized_crop(x, top, left, h, w, size, flips)


def pad_crop(x: Tensor, size: int, g: torch.Generator, padding: int = 4, flip: bool = True) -> Tensor:
    """Per-sample ``RandomCrop(size, padding, fill=0)`` (+ horizontal flip p = 0.5), the CIFAR recipe.

    Integer offsets sample exactly at pixel centres, so the bilinear warp returns the input values unchanged.
    """
    n, _, hgt, wid = x.shape
    top = rand.randint(n, 0, hgt + 2 * padding - size + 1, g) - padding
    left = rand.randint(n, 0, wid + 2 * padding - size + 1, g) - padding
    flips = rand.bernoulli(n, 0.5, g) if flip else None
    return shift_crop(x, top, left, size, flips)


def shift_crop(x: Tensor, top: Tensor, left: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    """size×size windows at integer offsets (top, left) per sample, zero outside the image, optionally
    mirrored: out[…, v, u] = x[…, top + v, left + u′] with u′ = size − 1 − u when flipped. Pure copies, no
    resampling, so exactly ``warp`` of the integer crop matrix.

    One element gather through flat int32 indices built from (B, size) vectors: on the CPU faster than a row
    gather followed by a column gather, and int64 indices would cost more than the copy itself
    (docs/benchmarks.md).
    """
    b, c, hin, win = x.shape
    u = torch.arange(size, device=x.device)
    rows = top.view(-1, 1) + u  # (B, size)
    cols = left.view(-1, 1) + (torch.where(flip.view(-1, 1), size - 1 - u, u) if flip is not None else u)
    dt = mask_dtype(x)  # a float mask for float x: bool masks are slow on the CPU (masks.py)
    inside = within(rows, 0, hin, dt)[:, :, None] * within(cols, 0, win, dt)[:, None, :]
    base = (torch.arange(b * c, device=x.device, dtype=torch.int32) * (hin * win)).view(b, c, 1, 1)
    r = (rows.clamp(0, hin - 1) * win).to(torch.int32).view(b, 1, size, 1)
    flat = (base + r + cols.clamp(0, win - 1).to(torch.int32).view(b, 1, 1, size)).view(-1)
    out = x.reshape(-1).index_select(0, flat).view(b, c, size, size)
    return out.mul_(inside.unsqueeze(1))


def shift_rows(x: Tensor, offset: Tensor) -> Tensor:
    """out[b, c, v] = x[b, c, v + offset[b]] where that row exists, else 0: a per-sample vertical shift.

    Rows are contiguous, so one ``index_select`` over the (B·C·H, W) rows moves each with a block copy —
    several times faster on the CPU than an element ``gather`` along the height (docs/benchmarks.md).
    """
    b, c, h, w = x.shape
    src = torch.arange(h, device=x.device).view(1, h) + offset.to(torch.int64).view(-1, 1)  # (B, H)
    valid = within(src, 0, h, mask_dtype(x))
    planes = torch.arange(b * c, device=x.device).view(b, c, 1) * h
    rows = (planes + src.clamp_(0, h - 1).view(b, 1, h)).view(-1)
    out = x.reshape(b * c * h, w).index_select(0, rows).view(b, c, h, w)
    return out.mul_(valid.view(b, 1, h, 1))


def center_crop_resize(x: Tensor, size: int, resize_to: int | None = None) -> Tensor:
    """Deterministic ``Resize(resize_to)`` (antialiased, if the size differs) + ``CenterCrop(size)``."""
    h, w = x.shape[-2:]
    if resize_to is not None and min(h, w) != resize_to:
        scale = resize_to / min(h, w)
        new = (max(resize_to, round(h * scale)), max(resize_to, round(w * scale)))
        x = F.interpolate(x, size=new, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
        h, w = new
    if (h, w) == (size, size):
        return x
    if h < size or w < size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return x.clamp_(0, 1)
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]
