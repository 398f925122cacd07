"""PIRL's jigsaw transformation I^t (Misra & van der Maaten 2020, §4.1) as building blocks: the patch geometry, the
patches cut from a batch, and the head g that projects and concatenates them.

As VISSL's ImgPilToPatchesAndImage and PyContrast's JigsawCrop: a 255-px crop, 85-px cells, 64-px patches — here
the view is resized by 255/224 first, so a 224-px view gives exactly that geometry. Each patch goes through the
encoder on its own; g projects every patch, concatenates the patches in a random order per image and projects
the concatenation (PyContrast JigsawHead, VISSL's PIRL head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# PIRL's jigsaw geometry relative to the 224-px image: a 255-px source cut into 85-px cells, 64-px patches.
JIGSAW_SOURCE = 255 / 224
JIGSAW_PATCH = 64 / 85


def jigsaw_geometry(image_size: int, grid: int) -> tuple[int, int, int]:
    """(source side, cell side, patch side) for a view of `image_size`: (255, 85, 64) at 224 px, grid 3."""
    source = round(image_size * JIGSAW_SOURCE)
    cell, patch = jigsaw_cells(source, grid)
    return source, cell, patch


def jigsaw_cells(source: int, grid: int) -> tuple[int, int]:
    """(cell side, patch side) of a grid × grid jigsaw cut from a `source`-px square."""
    cell = source // grid
    if cell < 1:
        raise ValueError(f"pretext.jigsaw_grid = {grid} leaves no pixels per cell of a {source}-px view")
    return cell, max(1, round(cell * JIGSAW_PATCH))


def jigsaw_source(x: torch.Tensor) -> torch.Tensor:
    """The view resized by 255/224, the side PIRL cuts its jigsaw from (bilinear, as the crop's resampling)."""
    source = round(x.shape[-1] * JIGSAW_SOURCE)
    return F.interpolate(x, size=(source, source), mode="bilinear", align_corners=False)


def jigsaw_patches(x: torch.Tensor, grid: int, g: torch.Generator) -> torch.Tensor:
    """(B·grid², C, p, p) patches cut from the square batch x, grid² consecutive rows per image in row-major
    cell order, each at a random offset inside its cell (independent per patch, as PyContrast's JigsawCrop)."""
    b, c, size, _ = x.shape
    cell, patch = jigsaw_cells(size, grid)
    n = grid * grid
    offsets = torch.randint(0, cell - patch + 1, (b, n, 2), generator=g).to(x.device)
    corner = torch.arange(grid, device=x.device) * cell
    top = corner.repeat_interleave(grid).view(1, n) + offsets[..., 0]  # row-major: cell k is (k // g, k % g)
    left = corner.repeat(grid).view(1, n) + offsets[..., 1]
    span = torch.arange(patch, device=x.device)
    rows = (top[..., None] + span).view(b, n, patch, 1)
    cols = (left[..., None] + span).view(b, n, 1, patch)
    img = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    out = x.permute(0, 2, 3, 1)[img, rows, cols]  # (b, n, patch, patch, c)
    return out.permute(0, 1, 4, 2, 3).reshape(b * n, c, patch, patch)


class JigsawHead(nn.Module):
    """g of PIRL: per-patch projection, concatenation in a per-image random order, a second projection."""

    def __init__(self, per_patch: nn.Module, dim: int, n_patches: int) -> None:
        super().__init__()
        self.per_patch = per_patch
        self.fc = nn.Linear(dim * n_patches, dim)
        self.n = n_patches

    def forward(self, feats: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """feats (B·n, d) in cell order; order (B, n) a permutation per image."""
        z = self.per_patch(feats)
        z = z.view(-1, self.n, z.shape[1])
        z = z.gather(1, order[..., None].expand_as(z))
        return self.fc(z.flatten(1))
