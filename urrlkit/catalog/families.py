"""The built-in augmentation families' parameters and value checks, without torch.

Each function here has exactly the signature of the family factory of the same name (urrlkit/augment/families.py,
instdis_family.py; tests/catalog/test_catalog.py holds them equal) and raises ValueError for values the factory would
reject. The factories call them, so the ranges live here once; recipe validation calls them instead of
building the family (which needs torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from urrlkit.catalog.param_checks import check_crop_scale, check_jitter, check_order, check_probabilities, check_range
from urrlkit.registry import Declaration

AUGMIX_CROPS = ("auto", "pad", "rrc", "none")


def default_severity(image_size: int) -> float:
    """The reference severities: 3 for CIFAR-sized images, 1 for ImageNet."""
    return 3.0 if image_size <= 64 else 1.0


def check_augmix(image_size: int, severity: float | None, width: int, crop: str, scale_min: float) -> float:
    """AugMix's settings (augment/families.py AugMix); returns the severity in effect."""
    if crop not in AUGMIX_CROPS:
        raise ValueError(f"crop must be one of {', '.join(AUGMIX_CROPS)}; got {crop!r}")
    if width < 1:
        raise ValueError(f"width must be ≥ 1, got {width}")
    check_range("scale_min", scale_min, 0, 1, lo_open=True)
    level = default_severity(image_size) if severity is None else float(severity)
    if not 0.1 <= level <= 10:
        raise ValueError(f"severity must be in [0.1, 10], got {level}")
    return level


def moco_v2(image_size: int, scale_min: float = 0.2, scale_max: float = 1.0, jitter_p: float = 0.8,
            brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1,
            grayscale_p: float = 0.2, blur_p: float = 0.5, blur_sigma_min: float = 0.1,
            blur_sigma_max: float = 2.0, flip: bool = True) -> None:
    check_crop_scale(scale_min, scale_max)
    check_jitter(brightness, contrast, saturation, hue)
    check_probabilities(jitter_p=jitter_p, grayscale_p=grayscale_p, blur_p=blur_p)
    check_range("blur_sigma_min", blur_sigma_min, 0, lo_open=True)  # σ = 0 divides by zero in the kernel
    check_order("blur_sigma_min", blur_sigma_min, "blur_sigma_max", blur_sigma_max)


def reference_blur_kernel(image_size: int) -> int:
    """The blur's taps in SimCLR's and BYOL's augmentations at image_size: a kernel of size // 10 (google-research/
    simclr data_util.py random_blur, ``kernel_size=height//10``) or size / 10 (deepmind-research byol
    augmentations.py, ``blur_divider = 10``), both then cut to radius int(k / 2) and 2·radius + 1 taps — for
    either, 2·(size // 20) + 1: 23 at 224 px, 3 at 32 px."""
    return 2 * (image_size // 20) + 1


def simclr_settings(image_size: int, strength: float | None, blur_p: float | None) -> tuple[float, float]:
    """SimCLR's size-dependent defaults, (colour-jitter strength, blur probability) in effect: ImageNet's
    (run.py --color_jitter_strength 1.0, --use_blur True: batch_random_blur p 0.5) above 64 px, the README's
    CIFAR-10 command (--color_jitter_strength=0.5 --use_blur=False) at 64 px and below."""
    small = image_size <= 64
    return ((0.5 if small else 1.0) if strength is None else float(strength),
            (0.0 if small else 0.5) if blur_p is None else float(blur_p))


def simclr(image_size: int, strength: float | None = None, scale_min: float = 0.08, scale_max: float = 1.0,
           jitter_p: float = 0.8, grayscale_p: float = 0.2, blur_p: float | None = None,
           blur_sigma_min: float = 0.1, blur_sigma_max: float = 2.0, flip: bool = True) -> None:
    check_crop_scale(scale_min, scale_max)
    s, blur = simclr_settings(image_size, strength, blur_p)
    check_range("strength", s, 0, 2.5)  # the hue range 0.2·strength must stay within ColorJitter's 0.5
    check_probabilities(jitter_p=jitter_p, grayscale_p=grayscale_p, blur_p=blur)
    check_range("blur_sigma_min", blur_sigma_min, 0, lo_open=True)
    check_order("blur_sigma_min", blur_sigma_min, "blur_sigma_max", blur_sigma_max)


def byol(image_size: int, scale_min: float = 0.08, scale_max: float = 1.0, jitter_p: float = 0.8,
         brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.2, hue: float = 0.1,
         grayscale_p: float = 0.2, blur_p: float = 1.0, blur_sigma_min: float = 0.1, blur_sigma_max: float = 2.0,
         solarize_p: float = 0.0, solarize_threshold: float = 0.5, flip: bool = True) -> None:
    check_crop_scale(scale_min, scale_max)
    check_jitter(brightness, contrast, saturation, hue)
    check_probabilities(jitter_p=jitter_p, grayscale_p=grayscale_p, blur_p=blur_p, solarize_p=solarize_p)
    check_range("blur_sigma_min", blur_sigma_min, 0, lo_open=True)
    check_order("blur_sigma_min", blur_sigma_min, "blur_sigma_max", blur_sigma_max)
    check_range("solarize_threshold", solarize_threshold, 0, 1)


def augmix(image_size: int, severity: float | None = None, width: int = 3, depth: int = -1,
           crop: str = "auto", scale_min: float = 0.08, flip: bool = True) -> None:
    check_augmix(image_size, severity, width, crop, scale_min)


augmix_allop = augmix


def augmix_moco(image_size: int, severity: float | None = None, width: int = 3, depth: int = -1,
                crop: str = "auto", scale_min: float = 0.08, flip: bool = True, all_ops: bool = True) -> None:
    check_augmix(image_size, severity, width, crop, scale_min)


def instdis(image_size: int, scale_min: float = 0.2, scale_max: float = 1.0, brightness: float = 0.4,
            contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.4, grayscale_p: float = 0.2,
            grayscale_first: bool = True, flip: bool = True) -> None:
    check_crop_scale(scale_min, scale_max)
    check_jitter(brightness, contrast, saturation, hue)
    check_probabilities(grayscale_p=grayscale_p)


def identity(image_size: int) -> None:
    """Nothing to check."""


class PrimeSettings(NamedTuple):
    diffeo_cut_max: int
    color_cut: int
    color_strength: float
    color_bandwidth: int | None  # None: every frequency up to the cut


def prime_settings(image_size: int, diffeo_cut_max: int | None, color_cut: int | None,
                   color_strength: float | None, color_bandwidth: int | None) -> PrimeSettings:
    """PRIME's size-dependent defaults (amodas/PRIME-augmentations config/cifar10_cfg.py for image_size ≤ 64,
    config/imagenet_cfg.py above) filled in; color_bandwidth 0 means none (every frequency up to the cut)."""
    small = image_size <= 64
    band = (None if small else 20) if color_bandwidth is None else (color_bandwidth or None)
    return PrimeSettings(diffeo_cut_max if diffeo_cut_max is not None else (100 if small else 500),
                         color_cut if color_cut is not None else (100 if small else 500),
                         color_strength if color_strength is not None else (0.01 if small else 0.05), band)


def prime(image_size: int, width: int = 3, depth: int = -1, diffeo: bool = True, color: bool = True,
          filter: bool = True, diffeo_cut_max: int | None = None, diffeo_alpha: float = 1.0,
          color_cut: int | None = None, color_strength: float | None = None, color_bandwidth: int | None = None,
          filter_sigma: float = 4.0, crop: str = "auto", scale_min: float = 0.08, flip: bool = True) -> None:
    check_augmix(image_size, None, width, crop, scale_min)
    if not (diffeo or color or filter):
        raise ValueError("diffeo, color and filter are all false: PRIME needs at least one primitive")
    s = prime_settings(image_size, diffeo_cut_max, color_cut, color_strength, color_bandwidth)
    check_range("diffeo_cut_max", s.diffeo_cut_max, 3, 2000)  # cut ∈ [2, diffeo_cut_max] (+ 1 at Beta = 1)
    check_range("diffeo_alpha", diffeo_alpha, 0, lo_open=True)
    check_range("color_cut", s.color_cut, 1, 2000)
    check_range("color_strength", s.color_strength, 0)
    check_range("color_bandwidth", s.color_bandwidth or 0, 0, 2000)
    check_range("filter_sigma", filter_sigma, 0)


def pixmix_settings(image_size: int, severity: float | None, beta: float | None) -> tuple[float, float]:
    """PixMix's size-dependent defaults (andyzoujm/pixmix cifar.py for image_size ≤ 64: aug severity 3,
    beta 3; imagenet.py above: 1, 4): (severity, beta) in effect."""
    level = default_severity(image_size) if severity is None else float(severity)
    return level, (3.0 if image_size <= 64 else 4.0) if beta is None else float(beta)


def pixmix(image_size: int, mixing_set: str = "fractals", mixing_set_size: int = 1000, fractal_seed: int = 0,
           k: int = 4, beta: float | None = None, severity: float | None = None, all_ops: bool = True,
           crop: str = "auto", scale_min: float = 0.08, flip: bool = True) -> None:
    level, mix_beta = pixmix_settings(image_size, severity, beta)
    check_augmix(image_size, level, 1, crop, scale_min)
    if not isinstance(mixing_set, str) or (mixing_set != "fractals" and not Path(mixing_set).expanduser().is_dir()):
        raise ValueError(f"mixing_set must be 'fractals' or an existing folder of images, got {mixing_set!r}")
    if mixing_set == "fractals" and mixing_set_size < 1:
        raise ValueError(f"mixing_set_size must be ≥ 1 for fractals, got {mixing_set_size}")
    check_range("mixing_set_size", mixing_set_size, 0)
    check_range("k", k, 0, 100)
    check_range("beta", mix_beta, 0, lo_open=True)


# ------------------------------------------------- trivialaugment, randaugment (augment/autoaugment.py)

AUTOAUGMENT_INTERPOLATIONS = ("nearest", "bilinear")


def check_int(name: str, value: object, lo: int) -> None:
    """An integer (not a bool) ≥ lo."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an integer ≥ {lo}, got {value!r}")


def check_autoaugment(num_magnitude_bins: int, interpolation: str, fill: float | None, crop: str,
                      scale_min: float) -> None:
    """The settings TrivialAugment and RandAugment share (torchvision's op spaces need ≥ 2 magnitude bins)."""
    check_int("num_magnitude_bins", num_magnitude_bins, 2)
    if interpolation not in AUTOAUGMENT_INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(AUTOAUGMENT_INTERPOLATIONS)}; got {interpolation!r}")
    if fill is not None:
        check_range("fill", fill, 0, 255)
    if crop not in AUGMIX_CROPS:
        raise ValueError(f"crop must be one of {', '.join(AUGMIX_CROPS)}; got {crop!r}")
    check_range("scale_min", scale_min, 0, 1, lo_open=True)


def trivialaugment(image_size: int, num_magnitude_bins: int = 31, interpolation: str = "nearest",
                   fill: float | None = None, crop: str = "auto", scale_min: float = 0.08,
                   flip: bool = True) -> None:
    check_autoaugment(num_magnitude_bins, interpolation, fill, crop, scale_min)


def randaugment(image_size: int, num_ops: int = 2, magnitude: int = 9, num_magnitude_bins: int = 31,
                interpolation: str = "nearest", fill: float | None = None, crop: str = "auto",
                scale_min: float = 0.08, flip: bool = True) -> None:
    check_int("num_ops", num_ops, 0)
    check_autoaugment(num_magnitude_bins, interpolation, fill, crop, scale_min)
    check_int("magnitude", magnitude, 0)
    if magnitude >= num_magnitude_bins:
        raise ValueError(f"magnitude must be < num_magnitude_bins = {num_magnitude_bins}, got {magnitude}")


# The families' entry points (pyproject.toml, group urrlkit.families) name these declarations: the factory,
# imported when the family is built, and the torch-free check above with the factory's signature.
MOCO_V2 = Declaration("urrlkit.augment.families:moco_v2", check=moco_v2)
AUGMIX = Declaration("urrlkit.augment.families:augmix_family", check=augmix)
AUGMIX_ALLOP = Declaration("urrlkit.augment.families:augmix_allop", check=augmix_allop)
AUGMIX_MOCO = Declaration("urrlkit.augment.families:augmix_moco", check=augmix_moco)
IDENTITY = Declaration("urrlkit.augment.families:identity", check=identity)
SIMCLR = Declaration("urrlkit.augment.families:simclr", check=simclr)
BYOL = Declaration("urrlkit.augment.families:byol", check=byol)
INSTDIS = Declaration("urrlkit.augment.instdis_family:instdis", check=instdis)
PRIME = Declaration("urrlkit.augment.prime:prime", check=prime)
PIXMIX = Declaration("urrlkit.augment.pixmix:pixmix_family", check=pixmix)
TRIVIALAUGMENT = Declaration("urrlkit.augment.autoaugment:trivialaugment", check=trivialaugment)
RANDAUGMENT = Declaration("urrlkit.augment.autoaugment:randaugment", check=randaugment)
