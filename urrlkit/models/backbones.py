"""Backbones (torchvision ResNets and narrow variants for CPU-scale work) and the model wrappers every
command shares. Models take images in [0, 1]; normalisation lives inside (the RobustBench convention), so
attacks, corruptions and augmentations all work in pixel space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from urrlkit.registry import BACKBONES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """(x − mean) / std with the statistics stored as buffers, so they travel with the weights."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _small_stem(net: tv_resnet.ResNet, width: int) -> None:
    """CIFAR-style stem: 3×3 stride-1 conv1 and no max-pool (for ≤ 64 px inputs)."""
    net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()


def _resnet(block: type[nn.Module], layers: list[int], small_stem: bool, width: int = 64) -> nn.Module:
    """A torchvision ResNet trunk (fc removed). `width` scales all four stages (64 = the standard net)."""
    net = tv_resnet.ResNet(block, layers)  # type: ignore[arg-type]
    if width != 64:
        # Rebuild the stages at the requested width with torchvision's own blocks and stage builder.
        net.inplanes = width
        net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        net.bn1 = nn.BatchNorm2d(width)
        net.layer1 = net._make_layer(block, width, layers[0])  # type: ignore[arg-type]
        net.layer2 = net._make_layer(block, width * 2, layers[1], stride=2)  # type: ignore[arg-type]
        net.layer3 = net._make_layer(block, width * 4, layers[2], stride=2)  # type: ignore[arg-type]
        net.layer4 = net._make_layer(block, width * 8, layers[3], stride=2)  # type: ignore[arg-type]
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    if small_stem:
        _small_stem(net, width)
    net.feature_dim = width * 8 * block.expansion  # type: ignore[attr-defined]
    net.fc = nn.Identity()
    return net


@BACKBONES.register("resnet18")
def resnet18(small_stem: bool = False, width: int | None = None) -> nn.Module:
    return _resnet(tv_resnet.BasicBlock, [2, 2, 2, 2], small_stem, width or 64)


@BACKBONES.register("resnet34")
def resnet34(small_stem: bool = False, width: int | None = None) -> nn.Module:
    return _resnet(tv_resnet.BasicBlock, [3, 4, 6, 3], small_stem, width or 64)


@BACKBONES.register("resnet50")
def resnet50(small_stem: bool = False, width: int | None = None) -> nn.Module:
    return _resnet(tv_resnet.Bottleneck, [3, 4, 6, 3], small_stem, width or 64)


@BACKBONES.register("resnet10")
def resnet10(small_stem: bool = False, width: int | None = None) -> nn.Module:
    """One block per stage: a small net for CPU-scale runs and tests."""
    return _resnet(tv_resnet.BasicBlock, [1, 1, 1, 1], small_stem, width or 64)


class Encoder(nn.Module):
    """f(x): [0, 1] images → feature vectors of size `feature_dim` (normalisation inside)."""

    def __init__(self, trunk: nn.Module, feature_dim: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.spec: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.normalize(x))


class Classifier(nn.Module):
    """g(f(x)) of paper Eq. 3: an encoder and a linear head. `features(x)` exposes f(x)."""

    def __init__(self, encoder: Encoder, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)
        nn.init.normal_(self.head.weight, std=0.01)  # main_lincls.py initialisation
        nn.init.zeros_(self.head.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor, return_features: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        feats = self.encoder(x)
        logits = self.head(feats)
        # Features come out of the same call so wrappers (DDP) see one forward for both terms of Eq. 4.
        return (logits, feats) if return_features else logits


def build_encoder(backbone: str, small_stem: bool = False, width: int | None = None,
                  mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Encoder:
    trunk = BACKBONES.get(backbone)(small_stem=small_stem, width=width)
    enc = Encoder(trunk, trunk.feature_dim, mean, std)
    enc.spec = {"backbone": backbone, "small_stem": small_stem, "width": width,
                "mean": list(mean), "std": list(std), "feature_dim": trunk.feature_dim}
    return enc


def encoder_from_spec(spec: dict) -> Encoder:
    """Rebuild an (untrained) encoder from the `spec` dict saved in a model's config.json."""
    return build_encoder(spec["backbone"], bool(spec.get("small_stem", False)), spec.get("width"),
                         spec.get("mean", IMAGENET_MEAN), spec.get("std", IMAGENET_STD))
