"""Batched transforms for the supervised stages (linear evaluation, fine-tuning)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from urrlkit.augment import geometry
from urrlkit.augment.sampler import to_float

SupervisedTransform = Callable[..., Tensor]


def eval_resize(image_size: int) -> int:
    """Shorter side before the centre crop: 256 for 224 (Resize(256) + CenterCrop(224)); ≤ 64 px unchanged."""
    return image_size if image_size <= 64 else round(image_size * 256 / 224)


class SupervisedTransform_:
    def __init__(self, kind: str, image_size: int, train: bool) -> None:
        if kind not in ("crop_flip", "none"):
            raise ValueError(f"unknown supervised augmentation {kind!r}; allowed: crop_flip, none")
        self.kind = kind
        self.image_size = image_size
        self.train = train and kind == "crop_flip"

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = to_float(x)
        s = self.image_size
        if not self.train:
            h = min(x.shape[-2:])
            # Stored images larger than the eval resize (e.g. 512 → 224) are resized first; a 256 store is
            # centre-cropped directly, which is exactly Resize(256) + CenterCrop(224).
            return geometry.center_crop_resize(x, s, eval_resize(s) if h > eval_resize(s) else None)
        if generator is None:
            raise ValueError("a training transform needs a torch.Generator")
        if s <= 64:
            return geometry.pad_crop(x, s, generator, padding=4, flip=True)
        return geometry.random_resized_crop(x, s, generator, scale=(0.08, 1.0), flip=True).clamp_(0, 1)

    def __repr__(self) -> str:
        return f"supervised_transform({self.kind!r}, image_size={self.image_size}, train={self.train})"


def supervised_transform(kind: str, image_size: int, train: bool = True) -> SupervisedTransform_:
    """``crop_flip`` train: per-sample pad-4 zero-padded random crop (≤ 64 px) or RandomResizedCrop(0.08–1)
    (larger), plus horizontal flip p = 0.5. ``none`` or ``train=False``: deterministic resize / centre crop.
    Input uint8 or float [0, 1] (B, 3, H, W) on any device; output float32 [0, 1], (B, 3, size, size).
    """
    return SupervisedTransform_(kind, image_size, train)
