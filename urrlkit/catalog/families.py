"""The built-in augmentation families' parameters and value checks, without torch.

Each function here has exactly the signature of the family factory of the same name (urrlkit/augment/families.py,
instdis_family.py; tests/catalog/test_catalog.py holds them equal) and raises ValueError for values the factory would
reject. The factories call them, so the ranges live here once; recipe validation calls them instead of
building the family (which needs torch).
"""

from __future__ import annotations

from urrlkit.catalog.param_checks import check_crop_scale, check_jitter, check_order, check_probabilities, check_range

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
