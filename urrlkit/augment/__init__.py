"""Batched, per-sample augmentation families and the URRL family sampler (paper Eq. 2).

Everything runs on the device of the input batch. For file-backed data sets the crops are drawn on the
original images in the DataLoader workers (``crops.py``, ``workers.py``). See docs/augment.md.
"""

from __future__ import annotations

from urrlkit.augment import (
    families,  # noqa: F401  (registers the built-in families)
    instdis_family,  # noqa: F401  (registers `instdis`, App. B)
)
from urrlkit.augment.crops import CropSpec
from urrlkit.augment.families import AugMix, Identity, MocoV2, default_severity
from urrlkit.augment.sampler import Family, FamilySampler, build_family, build_sampler, to_float
from urrlkit.augment.supervised import supervised_transform

__all__ = [
    "AugMix",
    "CropSpec",
    "Family",
    "FamilySampler",
    "Identity",
    "MocoV2",
    "build_family",
    "build_sampler",
    "default_severity",
    "supervised_transform",
    "to_float",
]
