"""The built-in augmentation families (paper §3.1; facebookresearch/moco, google-research/augmix, and the own
augmentations of SimCLR (google-research/simclr) and BYOL (deepmind-research byol)), registered in ``FAMILIES``.

A family factory is ``factory(image_size, **params) -> callable``; the callable maps a float [0, 1] batch
(B, 3, H, W) (H ≥ image_size allowed) and a ``torch.Generator`` to (B, 3, image_size, image_size), drawing
independent parameters for every sample. Factories are what recipes name in ``pretext.families``.

For crops drawn on original images (crops.py) a family also exposes its two stages apart: ``crop_spec``, the
geometric first stage as data, and ``photometric(x, g)``, everything after the crop and flip, on views already
cut to image_size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import torch
from torch import Tensor

from urrlkit.augment import augmix, color, geometry, rand
from urrlkit.augment.augmix_ops import AUGMENTATIONS, AUGMENTATIONS_ALL, MOCO_OPS, Op
from urrlkit.augment.crops import CropSpec
from urrlkit.augment.groups import copy_rows_, true_indices
from urrlkit.catalog import families as checks
from urrlkit.catalog.families import default_severity  # noqa: F401  (re-exported: augment/__init__.py)
from urrlkit.registry import FAMILIES

# ----------------------------------------------------------------- RandomResizedCrop, then colour


@dataclass
class CropDraw:
    """The crop and flip one view drew (None when only the photometric stage was drawn)."""

    top: Tensor | None
    left: Tensor | None
    height: Tensor | None
    width: Tensor | None
    flip: Tensor | None


P = TypeVar("P", bound=CropDraw)


class CropThenColour(Generic[P]):
    """A family that is RandomResizedCrop(scale, ratio 3/4–4/3) + flip followed by per-sample colour ops
    (MoCo v2's and InstDis's augmentations). Subclasses draw their colour parameters (``sample_colour``, which
    receives the crop's draws to carry along) and apply them (``colour``).

    The flip is folded into the crop's resampling: it commutes with the pointwise colour ops (and with a
    symmetric, reflect-padded blur), so the result is the same as flipping last. The two stages are also
    exposed apart (``crop_spec``, ``photometric``) for crops drawn on original images (augment/crops.py).
    """

    image_size: int
    scale: tuple[float, float]
    flip: bool

    @property
    def crop_spec(self) -> CropSpec:
        return CropSpec("rrc", scale=self.scale, ratio=(3 / 4, 4 / 3), flip=self.flip)

    def sample_colour(self, n: int, g: torch.Generator, *crop: Tensor | None) -> P:
        raise NotImplementedError

    def colour(self, out: Tensor, p: P) -> Tensor:
        raise NotImplementedError

    def sample_params(self, n: int, height: int, width: int, g: torch.Generator) -> P:
        top, left, h, w = geometry.rrc_params(n, height, width, self.scale, (3 / 4, 4 / 3), g)
        flip = rand.bernoulli(n, 0.5 if self.flip else 0.0, g)
        return self.sample_colour(n, g, top, left, h, w, flip)

    def apply(self, x: Tensor, p: P) -> Tensor:
        assert p.top is not None and p.left is not None and p.height is not None and p.width is not None
        out = geometry.resized_crop(x, p.top, p.left, p.height, p.width, self.image_size, p.flip).clamp_(0, 1)
        return self.colour(out, p)

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        return self.apply(x, self.sample_params(x.shape[0], x.shape[-2], x.shape[-1], g))

    def photometric(self, x: Tensor, g: torch.Generator) -> Tensor:
        """Everything after the crop and flip, on views (B, 3, image_size, image_size) in [0, 1]."""
        return self.colour(x.clone(), self.sample_colour(x.shape[0], g))


# ------------------------------------------------------------------------------------------ MoCo v2


@dataclass
class MocoParams(CropDraw):
    """Everything one MoCo v2 view draws for n images."""

    jitter: Tensor  # bool: ColorJitter applied (p = 0.8)
    factors: Tensor  # (n, 4) brightness, contrast, saturation, hue
    order: Tensor  # (n, 4) jitter order
    gray: Tensor  # bool: grayscale applied (p = 0.2)
    blur: Tensor  # bool: blur applied (p = 0.5)
    sigma: Tensor  # (n,) blur σ ~ U(0.1, 2)
    solarize: Tensor | None = None  # bool: solarized (BYOL); None when solarize_p = 0, nothing drawn


class MocoV2(CropThenColour[MocoParams]):
    """MoCo v2 ``--aug-plus`` (T_rep): RandomResizedCrop(scale 0.2–1) → ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8
    → RandomGrayscale p 0.2 → GaussianBlur σ ~ U(0.1, 2) p 0.5 → horizontal flip.

    The same pipeline serves SimCLR's and BYOL's augmentations (``simclr``, ``byol``), which add two settings:
    ``kernel_size``, the blur's odd tap count (default: ±3σ_max, ``color.blur_kernel_size``; SimCLR and BYOL
    use ``reference_blur_kernel(image_size)``), and ``solarize_p``, BYOL's solarization after the blur,
    x ↦ 1 − x where x ≥ ``solarize_threshold`` (deepmind-research byol augmentations.py ``_solarize_single_image``:
    ``where(image < threshold, image, 1 − image)``, threshold 0.5). With ``solarize_p = 0`` nothing is drawn for
    it, so MoCo v2's views are exactly what they were before the option existed.
    """

    def __init__(self, image_size: int, scale: tuple[float, float] = (0.2, 1.0), jitter_p: float = 0.8,
                 jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
                 grayscale_p: float = 0.2, blur_p: float = 0.5, blur_sigma: tuple[float, float] = (0.1, 2.0),
                 flip: bool = True, *, kernel_size: int | None = None, solarize_p: float = 0.0,
                 solarize_threshold: float = 0.5) -> None:
        self.image_size = image_size
        self.scale = scale
        self.jitter_p = jitter_p
        self.jitter = jitter
        self.grayscale_p = grayscale_p
        self.blur_p = blur_p
        self.blur_sigma = blur_sigma
        self.kernel = color.blur_kernel_size(blur_sigma[1]) if kernel_size is None else kernel_size
        self.flip = flip
        self.solarize_p = solarize_p
        self.solarize_threshold = solarize_threshold

    def sample_colour(self, n: int, g: torch.Generator, *crop: Tensor | None) -> MocoParams:
        """The photometric draws (after those of the crop and flip, which ``crop`` carries, if any)."""
        jitter_on = rand.bernoulli(n, self.jitter_p, g)
        factors, order = color.jitter_params(n, g, *self.jitter)
        gray = rand.bernoulli(n, self.grayscale_p, g)
        blur = rand.bernoulli(n, self.blur_p, g)
        sigma = rand.uniform(n, *self.blur_sigma, g)
        # Last, and only when on: every earlier draw is unchanged by the option.
        solar = rand.bernoulli(n, self.solarize_p, g) if self.solarize_p > 0 else None
        top, left, h, w, flip = crop or (None,) * 5
        return MocoParams(top, left, h, w, flip, jitter_on, factors, order, gray, blur, sigma, solar)

    def colour(self, out: Tensor, p: MocoParams) -> Tensor:
        """ColorJitter, grayscale, blur and solarization of ``p`` on ``out`` (B, 3, s, s), in place."""
        masks = [p.jitter, p.gray, p.blur] + ([p.solarize] if p.solarize is not None else [])
        jitter, gray, blur, *solar = true_indices(masks)  # one host sync for all of them
        if jitter.numel():
            jittered = color.apply_jitter(out.index_select(0, jitter), p.factors[jitter], p.order[jitter])
            copy_rows_(out, jitter, jittered)
        if gray.numel():
            copy_rows_(out, gray, color.grayscale(out.index_select(0, gray)))
        if blur.numel():
            copy_rows_(out, blur, color.gaussian_blur(out.index_select(0, blur), p.sigma[blur], self.kernel))
        out.clamp_(0, 1)  # blur and the HSV round trip can overshoot by float rounding
        # BYOL solarizes the blur output and clips last; a blur of [0, 1] stays in [0, 1] up to rounding, so
        # solarizing after the clamp is the same image (and 1 − x keeps it in [0, 1]).
        if solar and solar[0].numel():
            copy_rows_(out, solar[0], solarize(out.index_select(0, solar[0]), self.solarize_threshold))
        return out


def solarize(x: Tensor, threshold: float = 0.5) -> Tensor:
    """x where x < threshold, else 1 − x (BYOL's ``_solarize_single_image``; torchvision ``solarize(x,
    threshold)`` on float images in [0, 1] computes the same)."""
    return torch.where(x < threshold, x, 1.0 - x)


@FAMILIES.register("moco_v2")
def moco_v2(image_size: int, scale_min: float = 0.2, scale_max: float = 1.0, jitter_p: float = 0.8,
            brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1,
            grayscale_p: float = 0.2, blur_p: float = 0.5, blur_sigma_min: float = 0.1,
            blur_sigma_max: float = 2.0, flip: bool = True) -> MocoV2:
    """T_rep of the paper: MoCo v2's augmentation (facebookresearch/moco main_moco.py `--aug-plus`)."""
    checks.moco_v2(**locals())  # the ranges, shared with torch-free recipe validation
    return MocoV2(image_size, (scale_min, scale_max), jitter_p, (brightness, contrast, saturation, hue),
                  grayscale_p, blur_p, (blur_sigma_min, blur_sigma_max), flip)


# ----------------------------------------------------------------------------------- SimCLR, BYOL

# What SimCLR's and BYOL's own colour pipelines (TensorFlow / JAX) do differently from the torchvision ops used
# here, named once for both families. Same: the four jitter ops in a random order per image, each clipped to
# [0, 1]; multiplicative brightness (SimCLR v2 impl); the hue rotation in HSV; luma grayscale (0.2989, 0.587,
# 0.114); the Gaussian taps exp(−x²/2σ²) normalised. Different: contrast blends with the mean of each channel
# (tf.image.adjust_contrast), not with the luma mean; saturation scales HSV's S (clipped to 1), not a blend
# with the grey image; BYOL's brightness adds δ ~ U(−b, b) instead of multiplying by U(1 − b, 1 + b); the blur
# pads with zeros ('SAME'), not by reflection; SimCLR's reference blur draws one σ per batch and view
# (batch_random_blur → random_blur), this one per image, as BYOL; the crop is torchvision's RandomResizedCrop
# (10 tries, then the centre) resized bilinearly, where SimCLR samples tf's distorted bounding box (100 tries,
# then the whole image) and BYOL one box clipped to the image, both resized bicubically.


@FAMILIES.register("simclr")
def simclr(image_size: int, strength: float | None = None, scale_min: float = 0.08, scale_max: float = 1.0,
           jitter_p: float = 0.8, grayscale_p: float = 0.2, blur_p: float | None = None,
           blur_sigma_min: float = 0.1, blur_sigma_max: float = 2.0, flip: bool = True) -> MocoV2:
    """SimCLR's augmentation (google-research/simclr data_util.py preprocess_for_train, color_jitter,
    batch_random_blur): RandomResizedCrop(scale 0.08–1) → flip → ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) p 0.8 →
    grayscale p 0.2 → Gaussian blur σ ~ U(0.1, 2) with 2·(size // 20) + 1 taps, p ``blur_p``. strength s:
    1.0 above 64 px, 0.5 at ≤ 64 (the README's CIFAR-10 run); blur_p: 0.5 above 64 px, 0 at ≤ 64
    (--use_blur=False). Differences from the reference's TensorFlow ops: the comment above this function."""
    checks.simclr(**locals())
    s, blur = checks.simclr_settings(image_size, strength, blur_p)
    return MocoV2(image_size, (scale_min, scale_max), jitter_p, (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), grayscale_p,
                  blur, (blur_sigma_min, blur_sigma_max), flip, kernel_size=checks.reference_blur_kernel(image_size))


@FAMILIES.register("byol")
def byol(image_size: int, scale_min: float = 0.08, scale_max: float = 1.0, jitter_p: float = 0.8,
         brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1,
         grayscale_p: float = 0.2, blur_p: float = 1.0, blur_sigma_min: float = 0.1, blur_sigma_max: float = 2.0,
         solarize_p: float = 0.0, solarize_threshold: float = 0.5, flip: bool = True) -> MocoV2:
    """BYOL's augmentation (Grill et al. 2020, Table 6; deepmind-research byol/utils/augmentations.py
    augment_config): RandomResizedCrop(scale 0.08–1) → flip → ColorJitter(0.4, 0.4, 0.2, 0.1) p 0.8 →
    grayscale p 0.2 → Gaussian blur σ ~ U(0.1, 2) with 2·(size // 20) + 1 taps, p ``blur_p`` → solarize
    (threshold 0.5) p ``solarize_p``. The defaults are view 1's (T: blur 1.0, solarize 0.0); the BYOL method sets
    view 2's (T′: blur 0.1, solarize 0.2) through its view groups. Differences from the reference's JAX ops:
    the comment above ``simclr``."""
    checks.byol(**locals())
    return MocoV2(image_size, (scale_min, scale_max), jitter_p, (brightness, contrast, saturation, hue), grayscale_p,
                  blur_p, (blur_sigma_min, blur_sigma_max), flip, kernel_size=checks.reference_blur_kernel(image_size),
                  solarize_p=solarize_p, solarize_threshold=solarize_threshold)


# ------------------------------------------------------------------------------------------- AugMix


class RobustCrop:
    """The crop and flip in front of the robust families (AugMix, PRIME, PixMix, TrivialAugment, RandAugment),
    then their own ``photometric`` stage. ``pad`` = RandomCrop(size, padding=4) + flip (the CIFAR pipelines of
    google-research/augmix cifar.py and of the other families' papers), ``rrc`` = RandomResizedCrop(size,
    scale=(scale_min, 1)) + flip (augmix imagenet.py; torchvision's classification presets), ``none`` = centre
    crop/resize; ``auto`` is ``pad`` for image_size ≤ 64 and ``rrc`` above."""

    def __init__(self, image_size: int, crop: str, scale_min: float, flip: bool) -> None:
        self.image_size = image_size
        self.crop = ("pad" if image_size <= 64 else "rrc") if crop == "auto" else crop
        self.scale_min = scale_min
        self.flip = flip

    @property
    def crop_spec(self) -> CropSpec:
        kinds: dict[str, Literal["rrc", "pad", "center"]] = {"pad": "pad", "rrc": "rrc", "none": "center"}
        return CropSpec(kinds[self.crop], scale=(self.scale_min, 1.0), flip=self.flip)

    def photometric(self, x: Tensor, g: torch.Generator) -> Tensor:
        raise NotImplementedError

    def crop_flip(self, x: Tensor, g: torch.Generator) -> Tensor:
        s = self.image_size
        if self.crop == "pad":
            return geometry.pad_crop(x, s, g, padding=4, flip=self.flip)
        if self.crop == "rrc":
            return geometry.random_resized_crop(x, s, g, scale=(self.scale_min, 1.0), flip=self.flip).clamp_(0, 1)
        out = geometry.center_crop_resize(x, s)
        if self.flip:
            flips = rand.bernoulli(x.shape[0], 0.5, g).view(-1, 1, 1, 1)
            out = torch.where(flips, out.flip(-1), out)
        return out

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        return self.photometric(self.crop_flip(x, g), g)


class AugMix(RobustCrop):
    """Crop + flip, then AugMix (T_rob) with per-sample chains.

    The crop follows the reference training pipelines: ``pad`` = RandomCrop(size, padding=4) (cifar.py),
    ``rrc`` = RandomResizedCrop(size, scale=(scale_min, 1)) (imagenet.py), ``none`` = centre crop/resize
    only; ``auto`` is ``pad`` for image_size ≤ 64 and ``rrc`` above. AugMix itself runs at image_size, so
    translate magnitudes use image_size/3 (the reference IMAGE_SIZE).
    """

    def __init__(self, image_size: int, ops: list[Op], severity: float | None = None, width: int = 3,
                 depth: int = -1, crop: str = "auto", scale_min: float = 0.08, flip: bool = True) -> None:
        self.severity = checks.check_augmix(image_size, severity, width, crop, scale_min)
        super().__init__(image_size, crop, scale_min, flip)
        self.ops = ops
        self.width = width
        self.depth = depth

    def photometric(self, x: Tensor, g: torch.Generator) -> Tensor:
        """AugMix itself, on views (B, 3, image_size, image_size) in [0, 1] already cropped and flipped."""
        return augmix.augment_and_mix(x, self.ops, g, self.severity, self.width, self.depth)


_AUGMIX_DOC = (
    "severity: level ~ U(0.1, severity) (None: 3 for ≤ 64 px, 1 above); width: chains; "
    "depth: fixed chain depth, ≤ 0 for U{1, 2, 3}; crop: auto | pad | rrc | none; "
    "scale_min: RandomResizedCrop lower scale; flip: horizontal flip p = 0.5."
)


@FAMILIES.register("augmix")
def augmix_family(image_size: int, severity: float | None = None, width: int = 3, depth: int = -1,
                  crop: str = "auto", scale_min: float = 0.08, flip: bool = True) -> AugMix:
    """AugMix with the reference's 9 ops (google-research/augmix `augmentations.augmentations`)."""
    return AugMix(image_size, list(AUGMENTATIONS.values()), severity, width, depth, crop, scale_min, flip)


@FAMILIES.register("augmix_allop")
def augmix_allop(image_size: int, severity: float | None = None, width: int = 3, depth: int = -1,
                 crop: str = "auto", scale_min: float = 0.08, flip: bool = True) -> AugMix:
    """AugMix (AllOp): the 13 ops of ``augmentations_all``; the paper's T_rob in Eq. 2."""
    return AugMix(image_size, list(AUGMENTATIONS_ALL.values()), severity, width, depth, crop, scale_min, flip)


@FAMILIES.register("augmix_moco")
def augmix_moco(image_size: int, severity: float | None = None, width: int = 3, depth: int = -1,
                crop: str = "auto", scale_min: float = 0.08, flip: bool = True,
                all_ops: bool = True) -> AugMix:
    """AugMix (MoCo): the chains may also draw MoCo v2's ColorJitter, grayscale and Gaussian blur (16 ops
    on top of AllOp; 12 with ``all_ops = false``)."""
    base = AUGMENTATIONS_ALL if all_ops else AUGMENTATIONS
    ops = [*base.values(), *MOCO_OPS.values()]
    return AugMix(image_size, ops, severity, width, depth, crop, scale_min, flip)


for _f in (augmix_family, augmix_allop, augmix_moco):
    _f.__doc__ = f"{_f.__doc__}\n\n    Parameters: {_AUGMIX_DOC}"


# ----------------------------------------------------------------------------------------- identity


class Identity:
    """Centre crop (or resize) to image_size, nothing random: the 'no augmentation' ablation."""

    crop_spec = CropSpec("center", flip=False)

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        return geometry.center_crop_resize(x, self.image_size)

    def photometric(self, x: Tensor, g: torch.Generator) -> Tensor:
        return x


@FAMILIES.register("identity")
def identity(image_size: int) -> Identity:
    """No augmentation (centre crop to image_size)."""
    return Identity(image_size)
