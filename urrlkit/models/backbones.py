"""Backbones (torchvision ResNets and narrow variants for CPU-scale work) and the model wrappers every
command shares. Models take images in [0, 1]; normalisation lives inside (the RobustBench convention), so
attacks, corruptions and augmentations all work in pixel space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from urrlkit.registry import BACKBONES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """(x − mean) / std with the statistics stored as buffers, so they travel with the weights."""

    mean: torch.Tensor  # buffers (register_buffer), declared for the type checker
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _small_stem(net: nn.Module, width: int) -> None:
    """CIFAR-style stem: 3×3 stride-1 conv1 and no max-pool (for ≤ 64 px inputs)."""
    net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()


def _resnet(kind: str, layers: list[int], small_stem: bool, width: int = 64) -> nn.Module:
    """A torchvision ResNet trunk (fc removed) of "basic" or "bottleneck" blocks. `width` scales all four stages
    (64 = the standard net)."""
    # Imported here: torchvision's package import costs seconds (docs/benchmarks.md), which naming a backbone
    # in a recipe (and `urrl recipe validate`) should not pay.
    from torchvision.models import resnet as tv_resnet

    block = tv_resnet.Bottleneck if kind == "bottleneck" else tv_resnet.BasicBlock
    net = tv_resnet.ResNet(block, layers)
    if width != 64:
        # Rebuild the stages at the requested width with torchvision's own blocks and stage builder.
        net.inplanes = width
        net.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        net.bn1 = nn.BatchNorm2d(width)
        net.layer1 = net._make_layer(block, width, layers[0])
        net.layer2 = net._make_layer(block, width * 2, layers[1], stride=2)
        net.layer3 = net._make_layer(block, width * 4, layers[2], stride=2)
        net.layer4 = net._make_layer(block, width * 8, layers[3], stride=2)
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    if small_stem:
        _small_stem(net, width)
    # ignores: Module.__setattr__ is annotated for Tensor | Module values only (a plain int is stored as any
    # attribute is), and torchvision annotates ResNet.fc as nn.Linear
    net.feature_dim = width * 8 * block.expansion  # type: ignore[assignment]
    net.fc = nn.Identity()  # type: ignore[assignment]
    return net


@BACKBONES.register("resnet18")
def resnet18(small_stem: bool = False, width: int | None = None) -> nn.Module:
    return _resnet("basic", [2, 2, 2, 2], small_stem, width or 64)


@BACKBONES.register("resnet34")
def resnet34(small_stem: bool = False, width: int | None = None) -> nn.Module:
    return _resnet("basic", [3, 4, 6, 3], small_stem, width or 64)


@BACKBONES.register("resnet50")
def resnet50(small_stem: bool = False, width: int | None = None) -> nn.Module:
    return _resnet("bottleneck", [3, 4, 6, 3], small_stem, width or 64)


@BACKBONES.register("resnet10")
def resnet10(small_stem: bool = False, width: int | None = None) -> nn.Module:
    """One block per stage: a small net for CPU-scale runs and tests."""
    return _resnet("basic", [1, 1, 1, 1], small_stem, width or 64)


class Encoder(nn.Module):
    """f(x): [0, 1] images → feature vectors of size `feature_dim` (normalisation inside)."""

    config: dict[str, Any]  # its config.json, set when urrlkit.hub loads it

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
    """g(f(x)) of paper Eq. 3: an encoder and a linear head; `encoder(x)` is f(x)."""

    config: dict[str, Any]  # its config.json, set when urrlkit.hub loads it

    def __init__(self, encoder: Encoder, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.feature_dim, num_classes)
        nn.init.normal_(self.head.weight, std=0.01)  # main_lincls.py initialisation
        nn.init.zeros_(self.head.bias)

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


# Bounds on what a model config (config.json, possibly from the Hub) may ask for, checked before anything is
# allocated: width 256 is 4× the standard ResNet (a ResNet-50 at 256 has ~0.4 G parameters); 100 000 classes
# covers ImageNet-21k five times over.
MAX_WIDTH = 256
MAX_CLASSES = 100_000


def check_spec(spec: object) -> dict:
    """`spec` (an encoder's config.json entry) with every field of the right type and within bounds; else
    ValueError naming the field."""
    if not isinstance(spec, dict):
        raise ValueError("encoder: expected an object")
    backbone = spec.get("backbone")
    if not isinstance(backbone, str) or backbone not in BACKBONES:
        raise ValueError(f"encoder.backbone: {backbone!r} is not a known backbone ({', '.join(BACKBONES.names())})")
    width = spec.get("width")
    if width is not None and (not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= MAX_WIDTH):
        raise ValueError(f"encoder.width: {width!r} must be an integer in 1..{MAX_WIDTH} (or null for 64)")
    if not isinstance(spec.get("small_stem", False), bool):
        raise ValueError(f"encoder.small_stem: {spec.get('small_stem')!r} must be true or false")
    for key, default in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        v = spec.get(key, default)
        if (not isinstance(v, list | tuple) or len(v) != 3
                or not all(isinstance(x, int | float) and not isinstance(x, bool) and abs(x) < 1e6 for x in v)
                or (key == "std" and not all(x > 0 for x in v))):
            raise ValueError(f"encoder.{key}: {v!r} must be three finite numbers" + (" > 0" if key == "std" else ""))
    return spec


def check_num_classes(n: object) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CLASSES:
        raise ValueError(f"num_classes: {n!r} must be an integer in 1..{MAX_CLASSES}")
    return n


def encoder_from_spec(spec: dict) -> Encoder:
    """Rebuild an (untrained) encoder from the `spec` dict saved in a model's config.json (checked first)."""
    check_spec(spec)
    return build_encoder(spec["backbone"], bool(spec.get("small_stem", False)), spec.get("width"),
                         spec.get("mean", IMAGENET_MEAN), spec.get("std", IMAGENET_STD))
