"""Backbones, heads and the normalisation-inside wrappers."""

from urrlkit.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Classifier,
    Encoder,
    Normalize,
    build_encoder,
    encoder_from_spec,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Classifier",
    "Encoder",
    "Normalize",
    "build_encoder",
    "encoder_from_spec",
]
