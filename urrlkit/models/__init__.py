"""Backbones, heads and the normalisation-inside wrappers."""

from urrlkit.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MAX_CLASSES,
    Classifier,
    Encoder,
    Normalize,
    build_encoder,
    check_num_classes,
    check_spec,
    encoder_from_settings,
    encoder_from_spec,
    resnet_trunk,
    settings_of,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAX_CLASSES",
    "Classifier",
    "Encoder",
    "Normalize",
    "build_encoder",
    "check_num_classes",
    "check_spec",
    "encoder_from_settings",
    "encoder_from_spec",
    "resnet_trunk",
    "settings_of",
]
