"""Range checks shared by the augmentation family factories and their torch-free checks (catalog/families.py).
Each raises ValueError with a message that starts with the parameter's name, so recipe validation names
`pretext.families[i].params.<name>` in its one-line error."""

from __future__ import annotations

import math


def check_range(name: str, value: float, lo: float, hi: float = math.inf, *, lo_open: bool = False) -> None:
    """`value` in [lo, hi] ((lo, hi] with lo_open) and finite."""
    low_ok = value > lo if lo_open else value >= lo
    if not (math.isfinite(value) and low_ok and value <= hi):
        left = "(" if lo_open else "["
        right = f"{hi:g}]" if math.isfinite(hi) else "∞)"
        raise ValueError(f"{name} must be in {left}{lo:g}, {right}, got {value!r}")


def check_order(low_name: str, low: float, high_name: str, high: float) -> None:
    if low > high:
        raise ValueError(f"{low_name} must be ≤ {high_name} = {high!r}, got {low!r}")


def check_crop_scale(scale_min: float, scale_max: float = 1.0) -> None:
    """RandomResizedCrop's area fraction: 0 < scale_min ≤ scale_max ≤ 1."""
    check_range("scale_min", scale_min, 0, 1, lo_open=True)
    check_range("scale_max", scale_max, 0, 1, lo_open=True)
    check_order("scale_min", scale_min, "scale_max", scale_max)


def check_jitter(brightness: float, contrast: float, saturation: float, hue: float) -> None:
    """torchvision ColorJitter's ranges: non-negative strengths, hue in [0, 0.5]."""
    for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        check_range(name, value, 0)
    check_range("hue", hue, 0, 0.5)


def check_probabilities(**named: float) -> None:
    for name, value in named.items():
        check_range(name, value, 0, 1)
