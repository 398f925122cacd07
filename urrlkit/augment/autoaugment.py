"""The robust families ``trivialaugment`` (TrivialAugment Wide, Müller & Hutter 2021) and ``randaugment``
(RandAugment, Cubuk et al. 2020) with torchvision's op definitions (pytorch/vision
torchvision/transforms/autoaugment.py ``TrivialAugmentWide`` / ``RandAugment``), batched per sample.

Per image: TrivialAugment draws one op uniformly from the 14 of autoaugment_ops.OP_NAMES, a magnitude bin
uniformly from ``num_magnitude_bins`` and, for signed ops, a sign (negated with probability ½); RandAugment
draws ``num_ops`` ops uniformly with replacement, each at the fixed bin ``magnitude`` with its own sign, and
applies them in the order drawn. Every image draws its own ops from the caller's generator; the batch is grouped
by the op drawn (all five geometric ops share one resampling pass), so each op runs once per step.

Before the ops, the crop and flip of torchvision's training recipes: ``rrc`` = RandomResizedCrop(size,
scale=(scale_min, 1)) + horizontal flip (references/classification presets.py, where ``--auto-augment ta_wide``
/ ``ra`` follow the crop and flip), ``pad`` = RandomCrop(size, padding=4) + flip (the CIFAR setting of the
TrivialAugment and RandAugment papers), ``none`` = centre crop/resize; ``auto`` is ``pad`` for image_size ≤ 64 and
``rrc`` above — the same crops as AugMix (families.py ``RobustCrop``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from urrlkit.augment import autoaugment_ops as ops
from urrlkit.augment import rand
from urrlkit.augment.families import RobustCrop
from urrlkit.augment.groups import copy_rows_, group_rows
from urrlkit.catalog import families as checks
from urrlkit.registry import FAMILIES

# Ops that run as one kernel: the geometric ones share the affine resampling; Identity runs nothing.
KERNELS = ("Affine", "Brightness", "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast",
           "Equalize")
OP_KERNEL = tuple(len(KERNELS) if name == "Identity" else KERNELS.index("Affine") if name in ops.GEOMETRIC
                  else KERNELS.index(name) for name in ops.OP_NAMES)


@dataclass
class OpDraw:
    """The ops n images drew: (steps, n) tensors, step-major (RandAugment's num_ops steps; 1 for TA)."""

    op: Tensor  # int64 index into ops.OP_NAMES
    bin: Tensor  # int64 magnitude bin
    negated: Tensor  # bool: the magnitude is negated (signed ops only; ignored by the others)


class AutoAugmentFamily(RobustCrop):
    """Crop + flip, then ``steps`` ops per image from an op space (TrivialAugment Wide or RandAugment).

    ``magnitude`` None draws the bin uniformly per op (TrivialAugment), an int fixes it (RandAugment).
    ``interpolation`` (nearest | bilinear) and ``fill`` (None: black outside, torchvision's fill=None; a number:
    that grey level 0…255 in all channels) are those of the geometric ops.
    """

    def __init__(self, image_size: int, space: str, steps: int, magnitude: int | None, num_bins: int,
                 interpolation: str, fill: float | None, crop: str, scale_min: float, flip: bool) -> None:
        super().__init__(image_size, crop, scale_min, flip)
        self.space = space
        self.steps = steps
        self.magnitude = magnitude
        self.num_bins = num_bins
        self.interpolation = interpolation
        self.fill = None if fill is None else float(fill)
        self._tables: dict[tuple[int, int, torch.device], tuple[ops.OpTables, Tensor]] = {}

    def op_space(self, height: int, width: int) -> ops.OpSpace:
        if self.space == "ta_wide":
            return ops.trivial_augment_wide_space(self.num_bins)
        return ops.rand_augment_space(self.num_bins, height, width)

    def tables(self, height: int, width: int, device: torch.device) -> tuple[ops.OpTables, Tensor]:
        """The magnitude and matrix tables for one image size, and the op → kernel map, built once per size and
        device (a host → device copy on every call would synchronise the stream)."""
        key = (height, width, device)
        if key not in self._tables:
            space = self.op_space(height, width)
            kernel = torch.tensor(OP_KERNEL, device=device)
            self._tables[key] = (ops.op_tables(space, self.num_bins, height, width, device), kernel)
        return self._tables[key]

    def sample_params(self, n: int, g: torch.Generator) -> OpDraw:
        """Per image and step: op ~ U{0…13}, bin ~ U{0…bins−1} (or the fixed magnitude), negated ~ B(½)."""
        shape = (self.steps, n)
        op = rand.randint(self.steps * n, 0, len(ops.OP_NAMES), g).view(shape)
        if self.magnitude is None:
            bins = rand.randint(self.steps * n, 0, self.num_bins, g).view(shape)
        else:
            bins = torch.full(shape, self.magnitude, dtype=torch.int64, device=g.device)
        negated = rand.bernoulli(self.steps * n, 0.5, g).view(shape)
        return OpDraw(op, bins, negated)

    def apply(self, x255: Tensor, p: OpDraw, *, inplace: bool = False) -> Tensor:
        """The drawn ops on x (n, 3, H, W) on the 8-bit grid, step by step; a new tensor unless ``inplace``."""
        h, w = x255.shape[-2:]
        t, op_kernel = self.tables(h, w, x255.device)
        j = (p.op * self.num_bins + p.bin) * 2 + p.negated.long()
        mag, theta = t.magnitude[j], t.theta[j]  # (steps, n), (steps, n, 2, 3)
        kernel = op_kernel[p.op]
        out = x255 if inplace else x255.clone()  # images that draw Identity keep their rows
        for step, groups in enumerate(group_rows(kernel, len(KERNELS))):
            for k, idx in groups:
                res = ops.apply_op(KERNELS[k], out.index_select(0, idx), mag[step, idx], theta[step, idx],
                                   self.interpolation, self.fill)
                copy_rows_(out, idx, res)
        return out

    def photometric(self, x: Tensor, g: torch.Generator) -> Tensor:
        """The ops on views (B, 3, image_size, image_size) in [0, 1] already cropped and flipped: rounded to the
        8-bit grid (torchvision's ops read uint8 images), augmented, and returned in [0, 1]."""
        x255 = (x * 255).round_()
        return self.apply(x255, self.sample_params(x.shape[0], g), inplace=True).div_(255)



_COMMON_DOC = (
    "num_magnitude_bins: bins of each op's magnitude range (torchvision 31); interpolation: nearest | bilinear "
    "(torchvision default nearest); fill: grey level 0–255 outside rotated/sheared/translated images (None: "
    "black, torchvision's fill=None); crop: auto | pad | rrc | none; scale_min: RandomResizedCrop lower scale; "
    "flip: horizontal flip p = 0.5."
)


@FAMILIES.register("trivialaugment")
def trivialaugment(image_size: int, num_magnitude_bins: int = 31, interpolation: str = "nearest",
                   fill: float | None = None, crop: str = "auto", scale_min: float = 0.08,
                   flip: bool = True) -> AutoAugmentFamily:
    """TrivialAugment Wide (torchvision ``TrivialAugmentWide``): one op per image at a uniformly drawn bin."""
    checks.trivialaugment(**locals())  # the ranges, shared with torch-free recipe validation
    return AutoAugmentFamily(image_size, "ta_wide", 1, None, num_magnitude_bins, interpolation, fill, crop,
                             scale_min, flip)


@FAMILIES.register("randaugment")
def randaugment(image_size: int, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31,
                interpolation: str = "nearest", fill: float | None = None, crop: str = "auto",
                scale_min: float = 0.08, flip: bool = True) -> AutoAugmentFamily:
    """RandAugment (torchvision ``RandAugment``): ``num_ops`` (2) ops per image, drawn with replacement, all at
    bin ``magnitude`` (9) of ``num_magnitude_bins``, each with its own sign."""
    checks.randaugment(**locals())
    return AutoAugmentFamily(image_size, "ra", num_ops, magnitude, num_magnitude_bins, interpolation, fill, crop,
                             scale_min, flip)


trivialaugment.__doc__ = f"{trivialaugment.__doc__}\n\n    Parameters: {_COMMON_DOC}"
randaugment.__doc__ = (f"{randaugment.__doc__}\n\n    Parameters: num_ops: ops per image; magnitude: the bin "
                       f"index, 0 ≤ magnitude < num_magnitude_bins; {_COMMON_DOC}")
