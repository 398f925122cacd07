"""One framing for the clean and the corrupted evaluation images of a data set.

The official "-C" sets fix where the corruption sits in the pipeline, so the clean images are framed to match:

- ImageNet-C was made from Resize(256) + CenterCrop(224) of the validation images and is stored at 224 px
  (hendrycks/robustness `make_imagenet_c.py`). Sources larger than the network input are therefore framed
  first (Resize(eval_resize(size)) + CenterCrop(size)) and corrupted at the network size; official images
  already at the network size are used as they are.
- CIFAR-10/100-C (32 px) and Tiny-ImageNet-C (64 px) were corrupted at the data set's own resolution. Smaller
  sources are corrupted there and then go through the *same* framing as their clean images: at 224 px that is
  the transfer protocol's Resize(256) + CenterCrop(224) of the 32 px image (Salman et al. 2020, whose test
  transform the paper's fine-tuning follows), at ≤ 64 px a direct resize.

`frame` is the only resampling on the evaluation path, for clean, official -C and generated -C images alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from urrlkit.augment.supervised import eval_resize

# Data sets stored as arrays (or small files) at one native resolution: evaluated from that resolution.
NATIVE_SIZE = {"cifar10": 32, "cifar100": 32, "cifar10-sample": 32, "tiny-imagenet": 64, "stl10": 96}


def source_size(dataset: str, root: Path | None, split: str) -> int | None:
    """The native resolution of a data set's images, or None for photographs of any size (ImageNet,
    ImageFolder, the transfer sets)."""
    if dataset in NATIVE_SIZE:
        return NATIVE_SIZE[dataset]
    if dataset == "npz" and root is not None and (Path(root) / f"{split}.npz").is_file():
        with np.load(Path(root) / f"{split}.npz", allow_pickle=False) as arr:
            return int(arr["images"].shape[1])
    return None


def load_size(dataset: str, root: Path | None, split: str, size: int) -> int:
    """The size to load a test split at for evaluation at `size`: the native resolution of array data sets
    (framed later by `frame`), else the shorter side of the eval resize (256 for 224)."""
    return source_size(dataset, root, split) or eval_resize(size)


def resize_short(x: torch.Tensor, short: int) -> torch.Tensor:
    """uint8 NCHW with the shorter side resized to `short` (bilinear, antialiased, rounded to uint8)."""
    h, w = x.shape[-2:]
    if min(h, w) == short:
        return x
    scale = short / min(h, w)
    new = (max(short, round(h * scale)), max(short, round(w * scale)))
    y = F.interpolate(x.float(), size=new, mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def frame(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 NCHW → uint8 (N, C, size, size): as is at the network size, else Resize(eval_resize(size)) +
    CenterCrop(size)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    x = resize_short(x, eval_resize(size))
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def corrupt_framed(
    x: torch.Tensor, size: int, corruption: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Apply `corruption` (uint8 → uint8) where the official sets apply it: after the framing for sources
    larger than the network input (ImageNet-C), before it for smaller ones (CIFAR-C, Tiny-ImageNet-C).
    With the identity, this is `frame(x, size)` exactly."""
    if min(x.shape[-2:]) > size:
        return corruption(frame(x, size))
    return frame(corruption(x), size)
