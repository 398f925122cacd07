"""The [model] section: the backbone the encoder is built from."""

from __future__ import annotations

from pydantic import Field, field_validator

from urrlkit import registry
from urrlkit.config.sections import Section, _check_registered


class ModelConfig(Section):
    backbone: str = "resnet18"
    small_stem: bool = Field(True, description="3x3 stride-1 conv1 without max-pool, for ≤ 64 px images")
    width: int | None = Field(None, ge=4, description="base width for the resnet_w* backbones")
    feature_dim: int | None = Field(None, ge=1, description="checked against the backbone when given")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        return _check_registered(registry.BACKBONES, v)
