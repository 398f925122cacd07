"""The [model] section: the backbone the encoder is built from, declared by the backbone itself.

A backbone is a subclass of `BackboneSettings` (urrlkit/backbones/ for the built-in ones, any package for a
plugin: entry-point group `urrlkit.backbones`, urrlkit/registry.py) with its own fields and bounds;
`model.backbone` names it and it validates the rest of the table. A ResNet's `small_stem` and `width` belong to
the ResNets (urrlkit/backbones/resnet.py); `timm:<name>` builds any timm model (urrlkit/backbones/timm.py).
The same class validates an encoder's `config.json` entry when a model is loaded (urrlkit/models/backbones.py
`check_spec`), so a Hub file is held to the recipe's bounds.
Nothing here imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, SerializeAsAny, WrapValidator

from urrlkit import registry
from urrlkit.config.plugins import Dispatch
from urrlkit.config.sections import Section

if TYPE_CHECKING:
    from urrlkit.models import Encoder

DEFAULT_BACKBONE = "resnet18"


class BackboneSettings(Section):
    """Base of every backbone's settings. Subclasses declare `backbone: Literal["<name>"]` (or a `str` checked
    by themselves, with `prefixed = True`, for a family of names such as `timm:<model>`) and implement `build`."""

    backbone: str = Field(description="a registered backbone (urrlkit.registry.BACKBONES, or a package's "
                          "`urrlkit.backbones` entry point); built in: resnet10, resnet18, resnet34, resnet50, "
                          "timm:<any timm model name>")
    feature_dim: int | None = Field(None, ge=1, le=1_000_000, description="checked against the backbone when given")

    # True for an entry that takes names `<entry>:<rest>` (urrlkit/registry.py).
    prefixed: ClassVar[bool] = False

    def build(self) -> Encoder:
        """The encoder ([0, 1] images → features, normalisation inside: urrlkit/models/backbones.py `Encoder`),
        initialised from the global torch generator; its `spec` (saved as config.json's `encoder`) is this
        settings' dump plus the normalisation's mean/std and the feature size, and validates back to it."""
        raise NotImplementedError(f"{type(self).__name__} must implement build()")

    def default_input_size(self) -> int | None:
        """The input side the backbone is made for (a ViT's patch grid), None when any size goes or when only the
        built encoder knows it (its `input_size`, urrlkit/models/backbones.py). Torch-free."""
        return None

    def describe(self) -> str:
        """One line for model cards and tables, e.g. 'resnet10, width 16, 3×3 stem'. Torch-free."""
        return self.backbone

    def without_weights(self) -> BackboneSettings:
        """The settings that build the same architecture without fetching any weights: what a saved model is
        rebuilt from before its own weights are loaded (a `pretrained` flag off). Default: these settings."""
        return self

    def timm_fields(self, num_classes: int, input_size: int | None) -> dict[str, Any]:
        """What timm's `create_model("hf_hub:…")` reads from config.json for this backbone (`architecture`,
        `model_args`, `pretrained_cfg`), or {} when timm cannot build it (urrlkit/hub/interop.py). The model
        directory fills in the pretrained_cfg's `mean`, `std` and `num_classes` from the saved model itself.
        Called when a model is saved (torch is loaded then; it may import timm)."""
        return {}

    def interop_status(self) -> str | None:
        """None when `timm_fields` lets timm load the weights; else why not."""
        return "no timm equivalent"

    def rebuild_hint(self) -> str:
        """For the model card, when `interop_status` is not None: how a user of torchvision or timm alone
        builds the architecture to load model.safetensors into (Markdown), or '' for no hint."""
        return ""


def _backbone_dispatch() -> Dispatch:
    return Dispatch(registry.BACKBONES, "backbone", DEFAULT_BACKBONE, BackboneSettings)


def default_backbone() -> BackboneSettings:
    cls = _backbone_dispatch().resolve(DEFAULT_BACKBONE)
    assert cls is not None, "the built-in default backbone is not installed (pip install -e .)"
    return cls.model_validate({"backbone": DEFAULT_BACKBONE})  # type: ignore[return-value]


# The Recipe's field type: any backbone's settings, picked by `backbone`, serialised with the subclass's fields.
ModelConfig = Annotated[SerializeAsAny[BackboneSettings], WrapValidator(_backbone_dispatch())]


# What an encoder's spec (config.json's `encoder`) records beside its backbone's settings, found when it is built
# (urrlkit/models/backbones.py DERIVED: the building blocks import no config, so they keep their own tuple).
SPEC_DERIVED = ("mean", "std", "feature_dim")


def spec_table(spec: dict[str, Any]) -> dict[str, Any]:
    """The backbone's settings table within an encoder's spec: the spec less what its build derived."""
    return {k: v for k, v in spec.items() if k not in SPEC_DERIVED}


def backbone_settings(table: dict[str, Any]) -> BackboneSettings:
    """A [model] table (or an encoder's config.json entry) validated as the settings of the backbone it names."""
    from pydantic import TypeAdapter

    return TypeAdapter(ModelConfig).validate_python(table)
