"""InstDis's own augmentation (Wu et al. 2018), the T_rep of "InstDis w/ URRL" (paper App. B), registered in
``FAMILIES`` as ``instdis``.

lemniscate.pytorch main.py trains with RandomResizedCrop(224, scale=(0.2, 1)) → RandomGrayscale(p=0.2) →
ColorJitter(0.4, 0.4, 0.4, 0.4) (always applied) → RandomHorizontalFlip. Unlike MoCo v2 the grayscale comes
*before* the jitter (so saturation and hue then act on a grey image, i.e. not at all), the jitter is not
behind a p = 0.8 coin, hue reaches ±0.4 and there is no blur. PyContrast's "aug A" (its InsDis / PIRL
pipeline) jitters first and greys second: ``grayscale_first = false`` gives that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from urrlkit.augment import color, rand
from urrlkit.augment.families import CropDraw, CropThenColour
from urrlkit.augment.groups import copy_rows_, true_indices
from urrlkit.catalog import families as checks
from urrlkit.registry import FAMILIES


@dataclass
class InstDisParams(CropDraw):
    """Everything one InstDis view draws for n images."""

    gray: Tensor  # bool: grayscale applied (p = 0.2)
    factors: Tensor  # (n, 4) brightness, contrast, saturation, hue
    order: Tensor  # (n, 4) jitter order


class InstDisAug(CropThenColour[InstDisParams]):
    """RandomResizedCrop → RandomGrayscale → ColorJitter → flip (or jitter before grayscale)."""

    def __init__(self, image_size: int, scale: tuple[float, float] = (0.2, 1.0),
                 jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.4), grayscale_p: float = 0.2,
                 grayscale_first: bool = True, flip: bool = True) -> None:
        if not 0 <= jitter[3] <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {jitter[3]}")
        self.image_size = image_size
        self.scale = scale
        self.jitter = jitter
        self.grayscale_p = grayscale_p
        self.grayscale_first = grayscale_first
        self.flip = flip

    def sample_colour(self, n: int, g: torch.Generator, *crop: Tensor | None) -> InstDisParams:
        """The photometric draws (after those of the crop and flip, which ``crop`` carries, if any)."""
        gray = rand.bernoulli(n, self.grayscale_p, g)
        factors, order = color.jitter_params(n, g, *self.jitter)
        top, left, h, w, flip = crop or (None,) * 5
        return InstDisParams(top, left, h, w, flip, gray, factors, order)

    def _gray(self, out: Tensor, p: InstDisParams) -> None:
        (gray,) = true_indices([p.gray])
        if gray.numel():
            copy_rows_(out, gray, color.grayscale(out.index_select(0, gray)))

    def colour(self, out: Tensor, p: InstDisParams) -> Tensor:
        """Grayscale and ColorJitter of ``p`` on ``out`` (B, 3, s, s), in the family's order."""
        if self.grayscale_first:
            self._gray(out, p)
        out = color.apply_jitter(out, p.factors, p.order)
        if not self.grayscale_first:
            self._gray(out, p)
        return out.clamp_(0, 1)  # the HSV round trip of hue can overshoot by float rounding


@FAMILIES.register("instdis")
def instdis(image_size: int, scale_min: float = 0.2, scale_max: float = 1.0, brightness: float = 0.4,
            contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.4, grayscale_p: float = 0.2,
            grayscale_first: bool = True, flip: bool = True) -> InstDisAug:
    """InstDis's augmentation (lemniscate.pytorch): RandomResizedCrop(scale 0.2–1) → RandomGrayscale p 0.2 →
    ColorJitter(0.4, 0.4, 0.4, 0.4) → flip. grayscale_first = false: jitter, then grayscale (PyContrast)."""
    checks.instdis(**locals())  # the ranges, shared with torch-free recipe validation
    return InstDisAug(image_size, (scale_min, scale_max), (brightness, contrast, saturation, hue), grayscale_p,
                      grayscale_first, flip)
