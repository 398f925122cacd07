"""Backbones (torchvision ResNets and narrow variants for CPU-scale work; any timm model through
urrlkit/backbones/timm.py) and the model wrappers every command shares. Models take images in [0, 1];
normalisation lives inside (the RobustBench convention), so attacks, corruptions and augmentations all work in
pixel space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import ValidationError
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


def _resnet(kind: str, layers: list[int], small_stem: bool, width: int = 64) -> tuple[nn.Module, int]:
    """A torchvision ResNet trunk (fc removed) of "basic" or "bottleneck" blocks and its feature size. `width`
    scales all four stages (64 = the standard net)."""
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
    net.fc = nn.Identity()  # type: ignore[assignment]  # torchvision annotates ResNet.fc as nn.Linear
    return net, width * 8 * block.expansion


# name -> (block kind, blocks per stage); resnet10 has one block per stage: a small net for CPU-scale runs and tests.
RESNETS = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet34": ("basic", [3, 4, 6, 3]),
           "resnet50": ("bottleneck", [3, 4, 6, 3]), "resnet10": ("basic", [1, 1, 1, 1])}


def resnet_trunk(name: str, small_stem: bool = False, width: int | None = None) -> tuple[nn.Module, int]:
    """(trunk, feature size) of the ResNet `name` (RESNETS) at base `width` (None = 64)."""
    kind, layers = RESNETS[name]
    return _resnet(kind, layers, small_stem, width or 64)


class Encoder(nn.Module):
    """f(x): [0, 1] images → feature vectors of size `feature_dim` (normalisation inside).

    `head_name` is what the trunk's own library calls a classifier head on it ("fc" for torchvision's and timm's
    ResNets, "head" for a ViT, "head.fc" for a ConvNeXt): a Classifier's head is saved under that name, so the
    library loads a fine-tuned model with its head (urrlkit/hub/interop.py). `input_size` is the one image side
    the trunk accepts (a ViT's patch grid), None when any size goes."""

    config: dict[str, Any]  # its config.json, set when urrlkit.hub loads it

    def __init__(self, trunk: nn.Module, feature_dim: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, *, head_name: str = "head",
                 input_size: int | None = None) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.head_name = head_name
        self.input_size = input_size
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


class SettingError(ValueError):
    """A backbone's `build` found that one of its own settings cannot be built (e.g. an unknown timm model name,
    which validation cannot check without importing timm). The caller names the table: `model.<field>` for a
    recipe, `encoder.<field>` for a config.json."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def build_encoder(backbone: str, **options: Any) -> Encoder:
    """The encoder of the registered backbone `backbone` with its own settings `options` (e.g. a ResNet's
    small_stem and width; urrlkit/backbones): validated by the backbone's settings class (ValueError naming the
    field otherwise), then built."""
    return encoder_from_settings(settings_of({"backbone": backbone, **options}))


def settings_of(table: dict[str, Any], where: str = "model") -> Any:
    """The backbone settings (urrlkit/config/model.py BackboneSettings subclass) that `table` names and
    validates; ValueError naming `<where>.<field>` otherwise."""
    backbone = table.get("backbone")
    if not isinstance(backbone, str) or not BACKBONES.knows(backbone):
        raise ValueError(f"{where}.backbone: {backbone!r} is not a known backbone ({', '.join(BACKBONES.names())})")
    try:  # strict: a config.json "4" for an integer is a malformed file, not a value to coerce
        return BACKBONES.get(backbone).model_validate(table, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        ctx = first.get("ctx") or {}
        # a settings class's own check names its key relative to the table (config/sections.py _error_at)
        at = (ctx["key"],) if first["type"] == "urrl_at_key" and "key" in ctx else ()
        key = ".".join(str(k) for k in (where, *first["loc"], *at))
        got = "" if at else f" (got {first.get('input')!r})"
        raise ValueError(f"{key}: {first['msg']}{got}") from None


def encoder_from_settings(settings: Any, where: str = "model") -> Encoder:
    """Build the encoder `settings` (a BackboneSettings) describes, checking its feature_dim when given;
    ValueError naming `<where>.<field>` for a setting the backbone cannot build."""
    try:
        enc: Encoder = settings.build()
    except SettingError as exc:
        raise ValueError(f"{where}.{exc.field}: {exc.message}") from None
    want = getattr(settings, "feature_dim", None)
    if want is not None and want != enc.feature_dim:
        raise ValueError(f"{where}.feature_dim = {want}, but {settings.describe()} gives {enc.feature_dim}")
    return enc


# The entries of an encoder's spec that its build computes (the normalisation and the feature size) rather than
# settings of its backbone.
DERIVED = ("mean", "std", "feature_dim")


def spec_settings(spec: dict, where: str = "encoder") -> Any:
    """The backbone settings an encoder's spec (config.json's `encoder`) records."""
    return settings_of({k: v for k, v in spec.items() if k not in DERIVED}, where)


def describe_encoder(enc: Encoder) -> str:
    """One line naming the encoder's architecture (its backbone's `describe`), e.g. for RobustBench's claim."""
    try:
        return str(spec_settings(enc.spec).describe())
    except ValueError:
        return str(enc.spec.get("backbone", "unknown"))


def check_input_size(enc: Encoder, image_size: int, where: str = "data.image_size") -> None:
    """ValueError naming `where` when the encoder takes one image side only and `image_size` is another."""
    need = getattr(enc, "input_size", None)
    if need is not None and need != image_size:
        raise ValueError(f"{where} = {image_size}, but the model ({describe_encoder(enc)}) takes {need} px images "
                         f"only; set {where} = {need}")


# Bounds on what a model config (config.json, possibly from the Hub) may ask for, checked before anything is
# allocated (a backbone's own fields are bounded by its settings class, urrlkit/backbones): 100 000 classes
# covers ImageNet-21k five times over.
MAX_CLASSES = 100_000


def check_spec(spec: object) -> dict:
    """`spec` (an encoder's config.json entry) with every field of the right type and within bounds — the
    backbone's own settings class checks its fields, as it checks a recipe's [model] — else ValueError naming
    the field."""
    if not isinstance(spec, dict):
        raise ValueError("encoder: expected an object")
    spec_settings(spec)
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
    """Rebuild an (untrained) encoder from the `spec` dict saved in a model's config.json (checked first), with
    the normalisation it records. Nothing is downloaded: the saved weights replace any the backbone would fetch
    (`without_weights`), and the spec keeps the settings as trained (e.g. `pretrained = true`)."""
    check_spec(spec)
    settings = spec_settings(spec)
    weightless = settings.without_weights()
    enc = encoder_from_settings(weightless, "encoder")
    if weightless is not settings:
        enc.spec = {**enc.spec, **settings.model_dump(exclude={"feature_dim"})}
    if "mean" in spec or "std" in spec:  # the normalisation the model was saved with, whatever its backbone's default
        mean, std = spec.get("mean", enc.spec["mean"]), spec.get("std", enc.spec["std"])
        enc.normalize = Normalize(mean, std)
        enc.spec = {**enc.spec, "mean": list(mean), "std": list(std)}
    return enc
