"""torchvision's ResNets and their narrow variants for CPU-scale work (urrlkit/models/backbones.py builds them):
resnet10 (one block per stage), resnet18, resnet34, resnet50, with the CIFAR 3×3 stem as an option."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from urrlkit.config.model import BackboneSettings

if TYPE_CHECKING:
    from urrlkit.models import Encoder

# Width 256 is 4× the standard ResNet (a ResNet-50 at 256 has ~0.4 G parameters): bounded at validation, so a
# recipe or a Hub config.json cannot ask for a model that exhausts memory while it is built.
MAX_WIDTH = 256


class ResNet(BackboneSettings):
    """A torchvision ResNet trunk (fc removed), features of size width · 8 · expansion (512 / 2048 at width 64)."""

    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet10"] = "resnet18"
    small_stem: bool = Field(True, description="3x3 stride-1 conv1 without max-pool, for ≤ 64 px images")
    width: int | None = Field(None, ge=4, le=MAX_WIDTH, description="base width of the four stages (None = 64, "
                              "the standard net); narrow nets for CPU-scale runs")

    def build(self) -> Encoder:
        from urrlkit.models.backbones import IMAGENET_MEAN, IMAGENET_STD, Encoder, resnet_trunk

        trunk, feature_dim = resnet_trunk(self.backbone, self.small_stem, self.width)
        enc = Encoder(trunk, feature_dim, IMAGENET_MEAN, IMAGENET_STD)
        enc.spec = {"backbone": self.backbone, "small_stem": self.small_stem, "width": self.width,
                    "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "feature_dim": feature_dim}
        return enc

    def describe(self) -> str:
        width = f", width {self.width}" if self.width else ""
        return self.backbone + width + (", 3×3 stem" if self.small_stem else "")
