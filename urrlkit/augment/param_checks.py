"""Moved to urrlkit/catalog/param_checks.py (torch-free, so recipe validation can use it); kept importable here."""

from urrlkit.catalog.param_checks import check_crop_scale, check_jitter, check_order, check_probabilities, check_range

__all__ = ["check_crop_scale", "check_jitter", "check_order", "check_probabilities", "check_range"]
