"""Batched transforms for the supervised stages (linear evaluation, fine-tuning).

The transfer protocol (Salman et al. 2020, microsoft/robust-models-transfer `src/utils/constants.py`) trains on
RandomResizedCrop(224) + RandomHorizontalFlip of the image as loaded — for CIFAR the 32-px image itself, so the box
lies on the 32-px grid and is upsampled straight to 224 — and tests on Resize(256) + CenterCrop(224) of it. No
colour jitter or lighting noise: their TRAIN_TRANSFORMS replaces MadryLab robustness' ImageNet training transform.
"""

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


def eval_resize_for(stored: int, image_size: int) -> int | None:
    """The resize `center_crop_resize` needs before CenterCrop(image_size) of an image stored at `stored` px:
    none when it is already at the network size or at the eval resize (a 256 store of a 224 network), else
    eval_resize(image_size) — up or down, so a 32-px CIFAR image goes 32 → 256 → centre 224 as in Salman et
    al.'s TEST_TRANSFORMS and in `corruptions.framing.frame`."""
    return None if stored in (image_size, eval_resize(image_size)) else eval_resize(image_size)


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
            return geometry.center_crop_resize(x, s, eval_resize_for(min(x.shape[-2:]), s))
        if generator is None:
            raise ValueError("a training transform needs a torch.Generator")
        if s <= 64:
            return geometry.pad_crop(x, s, generator, padding=4, flip=True)
        # Any stored size: a 32-px array gets its box on the 32-px grid, upsampled once to s (torchvision's
        # RandomResizedCrop on the PIL image, as Salman et al. train CIFAR at 224).
        return geometry.random_resized_crop(x, s, generator, scale=(0.08, 1.0), flip=True).clamp_(0, 1)

    def __repr__(self) -> str:
        return f"supervised_transform({self.kind!r}, image_size={self.image_size}, train={self.train})"


def supervised_transform(kind: str, image_size: int, train: bool = True) -> SupervisedTransform_:
    """``crop_flip`` train: per-sample pad-4 zero-padded random crop (≤ 64 px) or RandomResizedCrop(0.08–1,
    ratio 3/4–4/3) of the stored image at any size (larger networks), plus horizontal flip p = 0.5. ``none`` or
    ``train=False``: Resize(eval_resize) + CenterCrop(image_size) as `eval_resize_for` says.
    Input uint8 or float [0, 1] (B, 3, H, W) on any device; output float32 [0, 1], (B, 3, size, size).
    """
    return SupervisedTransform_(kind, image_size, train)
