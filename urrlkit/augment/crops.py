"""Crops drawn on the ORIGINAL image (any size, any aspect), as the reference training pipelines draw them.

MoCo v2 (``main_moco.py --aug-plus``), AugMix (``imagenet.py``) and MoCo's linear evaluation (``main_lincls.py``)
apply ``transforms.RandomResizedCrop(224, scale=…)`` + ``RandomHorizontalFlip`` to the PIL image as decoded: the box
is drawn on the whole photo (area fraction ~ U(scale) of the photo, log-ratio ~ U(log 3/4, log 4/3), up to 10
attempts, else the centre crop at the clamped ratio), cropped, and resized to 224 with PIL bilinear
(torchvision's ``F.resized_crop`` on PIL images is ``img.crop(box).resize(size, BILINEAR)``). Here the same
happens per view inside the DataLoader workers; only the image_size views leave them, and the families'
photometric stages run after, batched (``FamilySampler.photometric``).

A family's first, geometric stage is plain data, a ``CropSpec``; everything after the crop and flip is its
``photometric`` callable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info

from urrlkit.augment import geometry, rand
from urrlkit.augment.groups import group
from urrlkit.augment.supervised import eval_resize
from urrlkit.data.datasets import center_offsets, dataset_len, pil_to_uint8


@dataclass(frozen=True)
class CropSpec:
    """A family's geometric first stage.

    ``rrc``: RandomResizedCrop(image_size, scale, ratio) on the original; ``pad``: RandomCrop(image_size,
    padding) with zero fill on the image's Resize + CenterCrop to image_size (the CIFAR recipe, ≤ 64 px);
    ``center``: Resize(eval_resize(image_size)) + CenterCrop(image_size), nothing random. ``flip``: then a
    horizontal flip with p = 0.5 (it commutes with every photometric op, so it may come first).
    """

    kind: Literal["rrc", "pad", "center"] = "rrc"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    padding: int = 4


@dataclass(frozen=True)
class Boxes:
    """What n views drew for their crop: ``rrc`` boxes on the original (top, left, height, width); ``pad``
    offsets (top, left) of the window in the image_size square; ``center``: zeros. ``flip`` (bool) per view."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor


def draw_boxes(spec: CropSpec, heights: Tensor, widths: Tensor, size: int, g: torch.Generator) -> Boxes:
    """Boxes for n views of images of sizes (heights[i], widths[i]), drawn from ``g`` (CPU)."""
    n = heights.shape[0]
    zeros = torch.zeros(n, dtype=torch.int64)
    if spec.kind == "rrc":
        top, left, h, w = geometry.rrc_boxes(heights, widths, spec.scale, spec.ratio, g)
    elif spec.kind == "pad":
        p = spec.padding
        top, left = rand.randint(n, -p, p + 1, g), rand.randint(n, -p, p + 1, g)
        h = w = torch.full((n,), size, dtype=torch.int64)
    elif spec.kind == "center":
        top, left, h, w = zeros, zeros, zeros, zeros
    else:
        raise ValueError(f"unknown crop kind {spec.kind!r}; allowed: rrc, pad, center")
    flip = rand.bernoulli(n, 0.5, g) if spec.flip else torch.zeros(n, dtype=torch.bool)
    return Boxes(top, left, h, w, flip)


def to_pil(image: Tensor) -> Image.Image:
    """uint8 CHW (RGB) → PIL image."""
    return Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())


def cut(img: Image.Image, kind: str, top: int, left: int, height: int, width: int, flip: bool,
        size: int) -> np.ndarray:
    """One view, uint8 (size, size, 3): the box cut from the original and resized as torchvision does on PIL
    images (``rrc``), the shifted window of the Resize + CenterCrop square (``pad``), or the evaluation crop
    (``center``); mirrored if ``flip``."""
    if kind == "rrc":
        box = img.crop((left, top, left + width, top + height))
        out = np.asarray(box.resize((size, size), Image.Resampling.BILINEAR))
    else:
        square = pil_to_uint8(img, eval_resize(size) if kind == "center" else size).permute(1, 2, 0).numpy()
        if kind == "center":
            t, lf = center_offsets(square.shape[0], square.shape[1], size)
            out = square[t:t + size, lf:lf + size]
        else:  # zero-filled window at (top, left) of the square, as RandomCrop(size, padding) draws it
            out = np.zeros((size, size, 3), dtype=np.uint8)
            r0, c0 = max(0, -top), max(0, -left)
            r1, c1 = min(size, size - top), min(size, size - left)
            out[r0:r1, c0:c1] = square[r0 + top:r1 + top, c0 + left:c1 + left]
    return out[:, ::-1] if flip else out


def new_batch(shape: tuple[int, ...], dtype: torch.dtype = torch.uint8) -> Tensor:
    """An output batch; in a DataLoader worker in shared memory, so it crosses to the main process uncopied."""
    out = torch.empty(shape, dtype=dtype)
    return out.share_memory_() if get_worker_info() is not None else out


@dataclass(frozen=True)
class ViewPlan:
    """Where each of n views comes from: source image ``src``, crop ``kinds[r]`` and its box / offsets
    (``Boxes`` fields), drawn per family in family order (``plan_views``)."""

    src: Tensor
    kinds: list[str]
    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor


def plan_views(heights: Tensor, widths: Tensor, fam: Tensor, specs: Sequence[CropSpec], size: int,
               g: torch.Generator) -> ViewPlan:
    """The crops of the views ``fam`` (view-major: row r is view r // B of image r % B) of B images of sizes
    (heights, widths): each family's boxes drawn from ``g`` in family order. The CPU cut (``crop_views``) and
    the device cut (``augment/device_crops.py``) share it, so both draw the same boxes from the same seed."""
    b, n = heights.shape[0], fam.numel()
    src = torch.arange(n, dtype=torch.int64) % b
    cols = {k: torch.zeros(n, dtype=torch.int64) for k in ("top", "left", "height", "width")}
    flip = torch.zeros(n, dtype=torch.bool)
    kinds = [""] * n
    for k, idx in group(fam, len(specs)):
        boxes = draw_boxes(specs[k], heights[src[idx]], widths[src[idx]], size, g)
        for name, col in cols.items():
            col[idx] = getattr(boxes, name)
        flip[idx] = boxes.flip
        for r in idx.tolist():
            kinds[r] = specs[k].kind
    return ViewPlan(src, kinds, cols["top"], cols["left"], cols["height"], cols["width"], flip)


def cut_rows(pils: Sequence[Image.Image], plan: ViewPlan, rows: Sequence[int], size: int, out: np.ndarray) -> None:
    """``out[j]`` (3, size, size) ← view ``rows[j]`` of the plan, cut on the CPU (``cut``) from ``pils[src]``."""
    t, lf, h, w, f = (plan.top.tolist(), plan.left.tolist(), plan.height.tolist(), plan.width.tolist(),
                      plan.flip.tolist())
    src = plan.src.tolist()
    for j, r in enumerate(rows):
        out[j] = cut(pils[src[r]], plan.kinds[r], t[r], lf[r], h[r], w[r], f[r], size).transpose(2, 0, 1)


def crop_views(images: Sequence[Tensor], fam: Tensor, specs: Sequence[CropSpec], size: int,
               g: torch.Generator) -> Tensor:
    """uint8 views (V·B, 3, size, size) of B original images (uint8 CHW, any sizes): row r is view r // B of
    image r % B, cut with the CropSpec of the family ``fam[r]`` it drew. Boxes are drawn per family, in family
    order, from ``g`` (``plan_views``)."""
    return crop_groups(images, [fam], [specs], [size], g)[0]


def crop_groups(images: Sequence[Tensor], fams: Sequence[Tensor], specs: Sequence[Sequence[CropSpec]],
                sizes: Sequence[int], g: torch.Generator) -> list[Tensor]:
    """``crop_views`` for views in groups (augment/multiview.py): group j's families ``fams[j]`` (count_j·B,
    view-major) cut with ``specs[j]`` to ``sizes[j]`` → one uint8 (count_j·B, 3, s_j, s_j) batch per group. Boxes
    are drawn group by group, each group's as ``crop_views`` draws them; each original becomes a PIL image once
    for all its views."""
    heights = torch.tensor([im.shape[-2] for im in images], dtype=torch.int64)
    widths = torch.tensor([im.shape[-1] for im in images], dtype=torch.int64)
    plans = [plan_views(heights, widths, fam, group_specs, size, g)
             for fam, group_specs, size in zip(fams, specs, sizes, strict=True)]
    pils = [to_pil(im) for im in images]
    out = []
    for plan, size in zip(plans, sizes, strict=True):
        n = plan.src.numel()
        batch = new_batch((n, 3, size, size))
        cut_rows(pils, plan, range(n), size, batch.numpy())  # the same memory
        out.append(batch)
    return out


def batch_seed(seed: int, index: Tensor) -> int:
    """A 63-bit seed from the run seed and the batch's image indices (order included)."""
    h = hashlib.blake2b(index.to(torch.int64).contiguous().numpy().tobytes(), digest_size=8,
                        key=int(seed).to_bytes(8, "little"))
    return int.from_bytes(h.digest(), "little") >> 1


class WithIndex(Dataset):
    """Yields (image, label, index): per-batch seeds come from the image indices."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return dataset_len(self.ds)

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        image, label = self.ds[i]
        return image, label, i
