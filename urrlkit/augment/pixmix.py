"""PixMix (Hendrycks et al. 2022, andyzoujm/pixmix), batched per sample, registered as ``pixmix``.

Per image, as ``pixmix`` in the reference cifar.py / imagenet.py:

    mixed = augment(orig) w.p. ½, else orig
    for round in range(U{0 … k}):
        partner = augment(orig) w.p. ½ (a fresh op), else the image's mixing picture
        mixed = clip(add or multiply (w.p. ½ each)(mixed, partner, beta), 0, 1)

``augment`` is one op drawn uniformly from ``augmentations_all`` (the 13 ops; ``augmentations``, AugMix's 9, with
``all_ops = false``) at level ~ U(0.1, severity), on the 8-bit grid as PIL runs it (augment/augmix_ops.py). The mixings
are ``pixmix_utils.py`` ``add`` (a·(2x − 1) + b·(2y − 1), back to [0, 1]) and ``multiply``
((2x)^a·(2y)^b / 2) with (a, b) from ``get_ab``. The mixing picture is one random image of the mixing set per
view, randomly cropped to image_size from its stored square (Resize(36) + RandomCrop(32) in cifar.py,
Resize(256) + RandomCrop(224) in imagenet.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from urrlkit.augment import fractals, rand
from urrlkit.augment.augmix_ops import AUGMENTATIONS, AUGMENTATIONS_ALL, Op
from urrlkit.augment.families import AugMix
from urrlkit.augment.groups import copy_rows_, group_rows
from urrlkit.catalog import families as checks
from urrlkit.registry import FAMILIES


def mixing_size(image_size: int) -> int:
    """Side of the stored mixing pictures: image_size + 4 up to 64 px (cifar.py's Resize(36) for 32), else
    the 256/224 ratio (imagenet.py's Resize(256) for 224)."""
    return image_size + 4 if image_size <= 64 else round(image_size * 256 / 224)


def get_ab(n: int, beta: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``get_ab``: w.p. ½ a ~ Beta(β, 1), b ~ Beta(1, β); else a = 1 + Beta(1, β), b = −Beta(1, β) (independent
    draws). Beta(β, 1) is U^(1/β) and Beta(1, β) is 1 − U^(1/β): exact inverse CDFs."""
    first = rand.bernoulli(n, 0.5, g)
    u = torch.rand(2, n, generator=g, device=g.device).pow_(1 / beta)  # two Beta(β, 1) draws
    a = torch.where(first, u[0], 2 - u[0])  # 1 + (1 − U^(1/β))
    b = torch.where(first, 1 - u[1], u[1] - 1)
    return a, b


def mix_add(x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``add``: (a·(2x − 1) + b·(2y − 1) + 1) / 2, per image a, b."""
    a, b = a.view(-1, 1, 1, 1), b.view(-1, 1, 1, 1)
    return (a * (2 * x - 1) + b * (2 * y - 1) + 1) / 2


def mix_multiply(x: Tensor, y: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``multiply``: (2x)^a · max(2y, 1e-37)^b / 2, per image a, b."""
    a, b = a.view(-1, 1, 1, 1), b.view(-1, 1, 1, 1)
    return (2 * x).pow(a) * (2 * y).clamp_min(1e-37).pow(b) / 2


@dataclass
class PixMixParams:
    """Everything PixMix draws for n images. Row 0 of op/level/sign is the start's op, row t + 1 round t's."""

    start_aug: Tensor  # (n,) bool: start from an augmented copy
    rounds: Tensor  # (n,) int64 in [0, k]
    use_aug: Tensor  # (k, n) bool: partner is an augmented copy (else the mixing picture)
    multiply: Tensor  # (k, n) bool: multiply (else add)
    a: Tensor  # (k, n)
    b: Tensor  # (k, n)
    op: Tensor  # (k + 1, n) int64
    level: Tensor  # (k + 1, n) in [0.1, severity]
    sign: Tensor  # (k + 1, n) ±1
    pic: Tensor  # (n,) index into the mixing set
    top: Tensor  # (n,) crop offsets of the mixing picture
    left: Tensor

    def augmented(self, n_ops: int) -> Tensor:
        """(k + 1, n) op ids of the augmented copies each image needs, n_ops where none."""
        need = torch.cat([self.start_aug.unsqueeze(0), self.active() & self.use_aug])
        return torch.where(need, self.op, n_ops)

    def active(self) -> Tensor:
        """(k, n) bool: image i mixes in round t (t < its number of rounds)."""
        k = self.use_aug.shape[0]
        return self.rounds.unsqueeze(0) > torch.arange(k, device=self.rounds.device).unsqueeze(1)

    def mixings(self, none: int) -> Tensor:
        """(k, n) per round 0 (add), 1 (multiply), or ``none`` where the image does not mix."""
        return torch.where(self.active(), self.multiply.long(), none)


def sample_params(n: int, n_ops: int, g: torch.Generator, k: int, beta: float, severity: float, n_pics: int,
                  slack: int) -> PixMixParams:
    """Draw PixMix's choices for n images; ``slack`` = stored mixing side − image_size."""
    start_aug = rand.bernoulli(n, 0.5, g)
    rounds = rand.randint(n, 0, k + 1, g)
    use_aug = rand.bernoulli(k * n, 0.5, g).view(k, n)
    multiply = rand.bernoulli(k * n, 0.5, g).view(k, n)
    a, b = get_ab(k * n, beta, g)
    op = rand.randint((k + 1) * n, 0, n_ops, g).view(k + 1, n)
    level = rand.uniform((k + 1) * n, 0.1, severity, g).view(k + 1, n)
    sign = rand.sign((k + 1) * n, g).view(k + 1, n)
    pic = rand.randint(n, 0, n_pics, g)
    top, left = rand.randint(n, 0, slack + 1, g), rand.randint(n, 0, slack + 1, g)
    return PixMixParams(start_aug, rounds, use_aug, multiply, a.view(k, n), b.view(k, n), op, level, sign, pic,
                        top, left)


def crop_pictures(pics: Tensor, idx: Tensor, top: Tensor, left: Tensor, size: int) -> Tensor:
    """pics[idx[i]][:, top[i]:top[i] + size, left[i]:left[i] + size] for every i, as float [0, 1]."""
    ar = torch.arange(size, device=pics.device)
    rows = (top.view(-1, 1) + ar).view(-1, 1, size, 1)
    cols = (left.view(-1, 1) + ar).view(-1, 1, 1, size)
    chan = torch.arange(pics.shape[1], device=pics.device).view(1, -1, 1, 1)
    return pics[idx.view(-1, 1, 1, 1), chan, rows, cols].float().div_(255)


def pixmix(x01: Tensor, p: PixMixParams, ops: list[Op], pictures: Tensor, g: torch.Generator) -> Tensor:
    """PixMix of a float [0, 1] batch with drawn parameters ``p`` and the mixing set ``pictures`` (uint8, on
    x's device)."""
    size, k = x01.shape[-1], p.use_aug.shape[0]
    x255 = (x01 * 255).round_()  # the ops read 8-bit pixels, as PIL images in the reference
    # Every row's groups in one host sync: the op of each augmented copy (start, rounds), then each round's
    # mixing; a round mixes (and makes partners for) only the images still mixing.
    groups = group_rows(torch.cat([p.augmented(len(ops)), p.mixings(len(ops))]), len(ops))

    def with_augmented(out: Tensor, row: int) -> Tensor:
        for op, idx in groups[row]:
            src = x255.index_select(0, idx)
            copy_rows_(out, idx, ops[op](src, p.level[row, idx], p.sign[row, idx], g).div_(255))
        return out

    mixed = with_augmented(x01.clone(), 0)
    picture = crop_pictures(pictures, p.pic, p.top, p.left, size)
    for t in range(k):
        if not groups[k + 1 + t]:
            continue
        partner = with_augmented(picture.clone(), t + 1)
        for kind, idx in groups[k + 1 + t]:
            fn = mix_multiply if kind == 1 else mix_add
            out = fn(mixed.index_select(0, idx), partner.index_select(0, idx), p.a[t, idx], p.b[t, idx])
            copy_rows_(mixed, idx, out.clamp_(0, 1))
    return mixed


class PixMix(AugMix):
    """Crop + flip (AugMix's first stage: pad-4 crop ≤ 64 px, RandomResizedCrop above, as PixMix's cifar.py and
    imagenet.py), then PixMix per image with the given mixing set."""

    def __init__(self, image_size: int, ops: list[Op], mixing: Tensor | Callable[[], Tensor], k: int = 4,
                 beta: float = 3.0, severity: float | None = None, crop: str = "auto", scale_min: float = 0.08,
                 flip: bool = True) -> None:
        super().__init__(image_size, ops, severity, 1, 1, crop, scale_min, flip)
        # A callable is called on first use: building the family (recipe checks, tests) makes no fractals, and
        # a DataLoader worker that never augments never decodes the folder.
        self.mixing = mixing
        self.k = k
        self.beta = beta
        self._on: dict[torch.device, Tensor] = {}

    def pictures(self, device: torch.device) -> Tensor:
        """The mixing set, uint8 (N, 3, S, S) with S ≥ image_size, on ``device`` (made and copied once)."""
        if device not in self._on:
            if not isinstance(self.mixing, Tensor):
                self.mixing = self.mixing()
            m, s = self.mixing, self.image_size
            if m.dtype != torch.uint8 or m.ndim != 4 or m.shape[0] < 1 or min(m.shape[-2:]) < s:
                raise ValueError(f"mixing set must be uint8 (N ≥ 1, 3, ≥ {s}, ≥ {s}), got {m.dtype} {tuple(m.shape)}")
            self._on[device] = m.to(device)
        return self._on[device]

    def photometric(self, x: Tensor, g: torch.Generator) -> Tensor:
        """PixMix itself on views (B, 3, image_size, image_size) in [0, 1], already cropped and flipped."""
        pics = self.pictures(x.device)
        slack = min(pics.shape[-1], pics.shape[-2]) - self.image_size
        p = sample_params(x.shape[0], len(self.ops), g, self.k, self.beta, self.severity, pics.shape[0], slack)
        return pixmix(x, p, self.ops, pics, g)


@FAMILIES.register("pixmix")
def pixmix_family(image_size: int, mixing_set: str = "fractals", mixing_set_size: int = 1000,
                  fractal_seed: int = 0, k: int = 4, beta: float | None = None, severity: float | None = None,
                  all_ops: bool = True, crop: str = "auto", scale_min: float = 0.08, flip: bool = True) -> PixMix:
    """PixMix (andyzoujm/pixmix). mixing_set: "fractals" (mixing_set_size procedural IFS fractals of
    fractal_seed, augment/fractals.py) or a folder of images (at most mixing_set_size of them; 0: all).
    Defaults are the paper's: k 4 (both scripts), beta 3 for image_size ≤ 64 (cifar.py) and 4 above
    (imagenet.py), severity 3 / 1 (``--aug-severity``), all_ops true (the 13 ops of ``augmentations_all``: the
    README's training recipes, "used in our paper", pass ``--all-ops`` to both scripts, whose flag defaults to
    off; false: the 9 AugMix ops); crop, scale_min, flip as ``augmix``."""
    checks.pixmix(**locals())  # the ranges, shared with torch-free recipe validation
    level, mix_beta = checks.pixmix_settings(image_size, severity, beta)
    pics = partial(fractals.mixing_set, mixing_set, mixing_size(image_size), mixing_set_size, fractal_seed)
    ops = list((AUGMENTATIONS_ALL if all_ops else AUGMENTATIONS).values())
    return PixMix(image_size, ops, pics, k, mix_beta, level, crop, scale_min, flip)
