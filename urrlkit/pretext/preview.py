"""A picture of what a recipe's views look like: ``urrl recipe views RECIPE --out views.png``.

One row per training image: the image at network size, then each of its views framed in its family's colour,
upscaled (nearest) so that 32-px images stay visible. The family of every view is returned too, for a legend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid, save_image

from urrlkit.augment.geometry import center_crop_resize
from urrlkit.augment.sampler import to_float
from urrlkit.augment.view_source import preview_views
from urrlkit.config import Recipe
from urrlkit.data import dataset_len, from_config
from urrlkit.errors import DataError, UrrlError
from urrlkit.pretext.workflow import recipe_sampler

# Distinguishable frame colours (Okabe-Ito), one per family in recipe order.
PALETTE = ((0.90, 0.62, 0.0), (0.34, 0.71, 0.91), (0.0, 0.62, 0.45), (0.94, 0.89, 0.26), (0.0, 0.45, 0.70),
           (0.84, 0.37, 0.0), (0.80, 0.47, 0.65))
FRAME = 3


def colour(k: int) -> tuple[float, float, float]:
    """The frame colour of family k."""
    return PALETTE[k % len(PALETTE)]


@dataclass
class Preview:
    grid: Tensor  # (3, H, W) float in [0, 1]
    families: Tensor  # (n_images, views) index into names
    names: list[str]


def _framed(x: Tensor, rgb: tuple[float, float, float] | None, tile: int) -> Tensor:
    """x (3, s, s) upscaled to tile × tile (nearest) inside a FRAME-pixel border of rgb (white if None)."""
    inner = F.interpolate(x[None], size=(tile - 2 * FRAME,) * 2, mode="nearest")[0]
    out = torch.tensor(rgb or (1.0, 1.0, 1.0)).view(3, 1, 1).expand(3, tile, tile).clone()
    out[:, FRAME:tile - FRAME, FRAME:tile - FRAME] = inner
    return out


def views_preview(recipe: Recipe, images: int = 8, seed: int = 0, tile: int = 96) -> Preview:
    """Draw the recipe's views for its first ``images`` training images, as pretraining's loader makes them for a
    batch of those images under run seed ``seed`` (augment/view_source.py preview_views): for file-backed data
    sets with data.crop_from = "original" each view's box is drawn on the decoded photo, otherwise on the stored
    image; every view of the method's view groups (multi-crop: smaller local crops too), each in its own size,
    shown at one tile size. Column 0 shows the image at network size (Resize + CenterCrop)."""
    if images < 1:
        raise ValueError(f"images must be ≥ 1, got {images}")
    ds = from_config(recipe.data, "train")
    if dataset_len(ds) == 0:
        raise DataError(f"data set {recipe.data.dataset!r} has no training images")
    size = recipe.data.image_size
    shown = preview_views(ds, recipe_sampler(recipe), seed, recipe.data.crop_from, images)
    views, fam, n = shown.views, shown.families, len(shown.images)
    if shown.crops_from == "original":  # photos of any size: Resize + CenterCrop each
        originals_shown = torch.cat([center_crop_resize(to_float(im[None]), size, resize_to=size)
                                     for im in shown.images])
    else:
        originals_shown = center_crop_resize(to_float(torch.stack(shown.images)), size)
    tile = max(tile, size + 2 * FRAME)
    tiles = []
    for i in range(n):
        tiles.append(_framed(originals_shown[i], None, tile))
        tiles += [_framed(views[v][i], colour(int(fam[v, i])), tile) for v in range(len(views))]
    grid = make_grid(torch.stack(tiles), nrow=1 + len(views), padding=2, pad_value=1.0)
    return Preview(grid, fam.t().contiguous(), shown.names)


def save_preview(preview: Preview, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(preview.grid, str(path))
    except (OSError, ValueError) as exc:  # a file in the way, a folder named like the PNG, a full or read-only
        # disk; PIL's ValueError: an extension it has no format for
        raise UrrlError(f"{path}: cannot write the preview ({getattr(exc, 'strerror', None) or exc})") from None
