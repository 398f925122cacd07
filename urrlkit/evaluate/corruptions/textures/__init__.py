"""Frost textures for the `frost` corruption.

The reference ships six photographs of frost that urrlkit cannot redistribute, so urrlkit makes its own:
`make_texture(k)` grows ice-crystal needles with hexagonal (±60°) side branches on a tileable canvas, adds a
soft glow, a low-frequency haze and a fine grain, and tints the result blue-white. It is deterministic
(texture k uses seed k) and takes a fraction of a second. Drop PNG or JPEG files into this folder (or point
URRL_FROST_TEXTURES at a folder) to use other textures, e.g. the original ones, instead.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

N_TEXTURES = 6
TEXTURE_SIZE = 384
HERE = Path(__file__).parent


def _segments(rng: np.random.Generator, size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    n = 220
    starts = rng.uniform(0, size, (n, 2))
    angles = rng.uniform(0, 2 * np.pi, n)
    lengths = rng.exponential(35, n) + 8
    out = [(starts, angles, lengths, 1.0)]
    for gen in range(3):
        s, a, ln, wt = out[-1]
        k = 4
        t = rng.uniform(0.1, 0.9, (len(a), k)) * ln[:, None]
        cs = s[:, None, :] + t[..., None] * np.stack([np.cos(a), np.sin(a)], -1)[:, None, :]
        ca = (
            a[:, None]
            + rng.choice([-np.pi / 3, np.pi / 3], size=(len(a), k))
            + rng.normal(0, 0.05, (len(a), k))
        )
        cl = ln[:, None] * rng.uniform(0.2, 0.45, (len(a), k))
        out.append((cs.reshape(-1, 2), ca.reshape(-1), cl.reshape(-1), wt * 0.75))
        if gen == 1:
            break
    return out


def make_texture(k: int, size: int = TEXTURE_SIZE) -> np.ndarray:
    """Procedural frost texture k as uint8 (size, size, 3) RGB; deterministic per k."""
    from scipy import ndimage

    rng = np.random.default_rng(1000 + k)
    canvas = np.zeros((size, size))
    for starts, angles, lengths, weight in _segments(rng, size):
        steps = np.arange(0, lengths.max(), 0.5)
        mask = steps[None, :] <= lengths[:, None]
        xs = starts[:, 0:1] + steps[None, :] * np.cos(angles)[:, None]
        ys = starts[:, 1:2] + steps[None, :] * np.sin(angles)[:, None]
        xi = np.round(xs[mask]).astype(np.int64) % size
        yi = np.round(ys[mask]).astype(np.int64) % size
        np.add.at(canvas, (yi, xi), weight)
    canvas = np.minimum(canvas, 3.0)
    sharp = ndimage.gaussian_filter(canvas, 0.6, mode="wrap")
    glow = ndimage.gaussian_filter(canvas, 3.0, mode="wrap")
    haze = ndimage.gaussian_filter(rng.normal(size=(size, size)), 24, mode="wrap")
    grain = ndimage.gaussian_filter(rng.normal(size=(size, size)), 0.8, mode="wrap")
    v = (
        sharp / sharp.max() * 0.9
        + glow / glow.max() * 0.6
        + (haze / np.abs(haze).max()) * 0.15
        + grain / np.abs(grain).max() * 0.08
    )
    v = v - v.min()
    v = v / np.quantile(v, 0.995)
    v = np.clip(0.25 + 0.75 * v, 0, 1)
    rgb = np.stack([0.82 * v, 0.91 * v, 1.0 * v], -1)
    return np.clip(rgb * 255, 0, 255).astype(np.uint8)


def _texture_files() -> list[Path]:
    folder = Path(os.environ.get("URRL_FROST_TEXTURES", HERE))
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})


@functools.lru_cache(maxsize=8)
def _base_textures() -> tuple[torch.Tensor, ...]:
    files = _texture_files()
    if files:
        from PIL import Image

        arrs = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    else:
        arrs = [make_texture(k) for k in range(N_TEXTURES)]
    return tuple(torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous() for a in arrs)


@functools.lru_cache(maxsize=16)
def frost_textures(scale: float) -> tuple[torch.Tensor, ...]:
    """The textures (uint8 CHW) resized by `scale` (cv2.resize INTER_LINEAR semantics, no antialiasing)."""
    out = []
    for t in _base_textures():
        if abs(scale - 1.0) < 1e-9:
            out.append(t)
            continue
        h, w = t.shape[-2:]
        size = (max(2, round(h * scale)), max(2, round(w * scale)))
        y = torch.nn.functional.interpolate(t[None].float(), size=size, mode="bilinear", align_corners=False)
        out.append(y[0].round().clamp(0, 255).to(torch.uint8))
    return tuple(out)
