"""Frost textures for the `frost` corruption.

The reference (hendrycks/robustness `create_c/`) blends six photographs of frost (frost1.png … frost6.jpg, of
which it draws from the first five). urrlkit does not redistribute them; it looks for them, in order:

1. the folder named by the URRL_FROST_TEXTURES environment variable (PNG/JPEG files, sorted by name);
2. the `imagecorruptions` package (`pip install 'urrlkit[frost]'`), which ships the same six files
   byte for byte — located without importing it;
3. otherwise a procedural fallback, with a one-line warning: `make_texture(k)` grows ice-crystal needles
   with hexagonal (±60°) side branches on a tileable canvas, adds a soft glow, a low-frequency haze and a
   fine grain, and maps the result to the photographs' mean colour and contrast (RGB mean (146, 167, 179),
   within-image std 28, measured on frost1–5). Deterministic (texture k uses seed 1000 + k).

`frost_source()` names the source in use; evaluation results record it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings
from pathlib import Path

import numpy as np
import torch

N_TEXTURES = 6
# the reference draws np.random.randint(5): frost6.jpg is never used
N_DRAWN = 5
TEXTURE_SIZE = 384
# the reference photographs frost1-5: mean RGB and mean within-image standard deviation (grey levels)
PHOTO_MEAN = (145.8, 167.2, 178.9)
PHOTO_STD = 28.0


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
    z = (v - v.mean()) / v.std()
    rgb = np.stack([m + PHOTO_STD * z for m in PHOTO_MEAN], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})


@functools.lru_cache(maxsize=1)
def _photographs() -> tuple[str, list[Path]]:
    """(source description, photograph files); no files means the procedural fallback."""
    env = os.environ.get("URRL_FROST_TEXTURES")
    if env:
        files = _files_in(Path(env))
        if files:
            return f"photographs from URRL_FROST_TEXTURES={env}", files
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is not None and spec.submodule_search_locations:
        files = _files_in(Path(next(iter(spec.submodule_search_locations))) / "frost")
        if files:
            from importlib.metadata import PackageNotFoundError, version

            try:
                ver = version("imagecorruptions")
            except PackageNotFoundError:
                ver = "?"
            return f"reference photographs (imagecorruptions {ver})", files
    return "procedural (fallback: pip install 'urrlkit[frost]' for the reference photographs)", []


def frost_source() -> str:
    """Which frost textures `frost` uses: the reference photographs or the procedural fallback."""
    return _photographs()[0]


def uses_fallback() -> bool:
    return not _photographs()[1]


def reset() -> None:
    """Forget the cached textures (after changing URRL_FROST_TEXTURES or installing the extra)."""
    for f in (_photographs, _base_textures, frost_textures):
        f.cache_clear()


@functools.lru_cache(maxsize=8)
def _base_textures() -> tuple[torch.Tensor, ...]:
    source, files = _photographs()
    if files:
        from PIL import Image

        arrs = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    else:
        warnings.warn(f"frost: {source}; perturbations differ from the official sets", stacklevel=3)
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
