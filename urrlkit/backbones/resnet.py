"""torchvision's ResNets and their narrow variants for CPU-scale work (urrlkit/models/backbones.py builds them):
resnet10 (one block per stage), resnet18, resnet34, resnet50, with the CIFAR 3×3 stem as an option."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from urrlkit.config.model import BackboneSettings

if TYPE_CHECKING:
    from urrlkit.models import Encoder

# Width 256 is 4× the standard ResNet (a ResNet-50 at 256 has ~0.4 G parameters): bounded at validation, so a
# recipe or a Hub config.json cannot ask for a model that exhausts memory while it is built.
MAX_WIDTH = 256
# timm's factory names for our torchvision-built trunks (timm's ResNet shares torchvision's tensor names);
# resnet10 is timm's resnet18 with one block per stage.
TIMM_ARCH = {"resnet18": ("resnet18", None), "resnet34": ("resnet34", None), "resnet50": ("resnet50", None),
             "resnet10": ("resnet18", [1, 1, 1, 1])}


class ResNet(BackboneSettings):
    """A torchvision ResNet trunk (fc removed), features of size width · 8 · expansion (512 / 2048 at width 64)."""

    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet10"] = "resnet18"
    small_stem: bool = Field(True, description="3x3 stride-1 conv1 without max-pool, for ≤ 64 px images")
    width: int | None = Field(None, ge=4, le=MAX_WIDTH, description="base width of the four stages (None = 64, "
                              "the standard net); narrow nets for CPU-scale runs")

    def build(self) -> Encoder:
        from urrlkit.models.backbones import IMAGENET_MEAN, IMAGENET_STD, Encoder, resnet_trunk

        trunk, feature_dim = resnet_trunk(self.backbone, self.small_stem, self.width)
        # torchvision's and timm's ResNets call their classifier `fc`: a Classifier's head is saved under it.
        enc = Encoder(trunk, feature_dim, IMAGENET_MEAN, IMAGENET_STD, head_name="fc")
        enc.spec = {"backbone": self.backbone, "small_stem": self.small_stem, "width": self.width,
                    "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "feature_dim": feature_dim}
        return enc

    def describe(self) -> str:
        width = f", width {self.width}" if self.width else ""
        return self.backbone + width + (", 3×3 stem" if self.small_stem else "")

    def interop_status(self) -> str | None:
        """timm (and torchvision) build the standard 7×7-stem ResNets at width 64 by name."""
        if self.small_stem:
            return "3×3 stride-1 stem without max-pool (CIFAR variant)"
        if self.width not in (None, 64):
            return f"width {self.width} (timm and torchvision build width 64 by name)"
        return None

    def timm_fields(self, num_classes: int, input_size: int | None) -> dict[str, Any]:
        """timm's resnet18/34/50 (resnet10: resnet18 with `layers` [1, 1, 1, 1]); what timm/models/_hub.py
        `_parse_model_cfg` reads."""
        if self.interop_status() is not None:
            return {}
        arch, layers = TIMM_ARCH[self.backbone]
        size = input_size or 224
        return {
            "architecture": arch,
            "model_args": {"layers": layers} if layers else {},
            "pretrained_cfg": {"input_size": [3, size, size], "interpolation": "bilinear", "crop_pct": 0.875,
                               "first_conv": "conv1", "classifier": "fc"},
        }

    def rebuild_hint(self) -> str:
        stem = (", replace `conv1` with a 3×3 stride-1 convolution and `maxpool` with `nn.Identity()`"
                if self.small_stem else "")
        width = f" at base width {self.width}" if self.width else ""
        return (f"In torchvision, build `ResNet(BasicBlock or Bottleneck, layers)`{width}{stem}, set "
                "`fc = nn.Identity()` and load the file with `strict=True`; docs/hub.md of urrlkit shows the code.")
