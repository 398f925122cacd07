"""The [pretext] section: the self-supervised method, declared by the method itself.

A method is one module (urrlkit/pretext/methods/*.py for the built-in ones, any package for a plugin) holding a
subclass of `MethodSettings`: its own typed fields with their bounds, beside the code that builds and runs it.
Every subclass shares the augmentation fields of paper Eq. 2 (`p`, `families`, `views`). The recipe's
`pretext.method` names the class (a registered name or a Python entry point of the group `urrlkit.pretexts`,
urrlkit/registry.py), which then validates the rest of the table; a field of another method is an unknown key of
this one. Nothing here imports torch: a settings class imports its torch code inside `build` / `forward`.

The hooks a method implements (each documented below): `build` its modules around the encoder, `forward` one
step to a `StepOutput`; optionally `after_step` (e.g. BYOL's target update), `view_groups` (multi-crop),
`check` (values that only make sense with the rest of the recipe), `chance_loss` (the collapse watch) and
`warnings`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, SerializeAsAny, WrapValidator, model_validator

from urrlkit import registry
from urrlkit.catalog import family_mix
from urrlkit.config.families import FamilySpec
from urrlkit.config.plugins import Dispatch
from urrlkit.config.sections import Section
from urrlkit.views import ViewGroup, same_views

if TYPE_CHECKING:
    from torch import Tensor, nn

    from urrlkit.engine.progress import Progress, StepOutput
    from urrlkit.models import Encoder
    from urrlkit.pretext.model import BuildContext, PretextModel

DEFAULT_METHOD = "moco_v2"


class MethodSettings(Section):
    """Base of every method's settings. Subclasses declare `method: Literal["<name>"] = "<name>"` and their own
    fields, and implement `build` and `forward`."""

    method: str = Field(description="a registered pretext method (urrlkit.registry.PRETEXTS, or a package's "
                        "`urrlkit.pretexts` entry point); built in: moco_v2, instdis, pirl, simclr, byol, moco_v3, "
                        "dino")
    views: int = Field(2, ge=2, le=64, description="views per image at data.image_size (each draws its family, "
                       "Eq. 2); multi-crop methods add their smaller views to these")
    p: float | None = Field(None, ge=0, le=1, description="shorthand for paper Eq. 2: {augmix_allop: p, "
                            "<the method's own augmentation>: 1 - p}")
    families: list[FamilySpec] = Field(default_factory=list, description="the weighted family list of Eq. 2; "
                                       "default: the method's own augmentation alone")

    # The method's own augmentation (T_rep of Eq. 2): what `p` mixes with AugMix and what no `families` means.
    representation_family: ClassVar[str] = "moco_v2"
    # One line for the model card: the method and what it optimises.
    summary: ClassVar[str] = ""

    @model_validator(mode="after")
    def _resolve_families(self) -> MethodSettings:
        if self.p is not None and self.families:
            raise ValueError("give either p (the paper's two-family shorthand) or families, not both")
        if self.p is None and not self.families:
            # model_construct: the default needs no re-validation, and a ValidationError raised in here would
            # surface with a location relative to FamilySpec ("name") instead of the user's dotted path.
            own = FamilySpec.model_construct(name=self.representation_family, weight=1.0, params={})
            self.__dict__["families"] = [own]
        if self.families and sum(f.weight for f in self.families) <= 0:
            raise ValueError("families: the weights must not all be zero")
        return self

    def family_weights(self) -> list[FamilySpec]:
        """The weighted family list, with `p` expanded by paper Eq. 2 around the method's own augmentation
        (catalog/family_mix.py `family_weights`)."""
        if self.p is not None:
            return [FamilySpec(name=name, weight=w)
                    for name, w in family_mix.family_weights(self.p, self.representation_family)]
        return list(self.families)

    # ------------------------------------------------------------------------------------- torch-free hooks

    def view_groups(self) -> list[ViewGroup]:
        """The views each image gives a step, in the order `forward` receives them (urrlkit/views.py)."""
        return same_views(self.views)

    def check(self, batch_size: int, image_size: int) -> None:
        """Raise ValueError (or config.sections._error_at naming a `pretext.*` key) for values that fail with
        this data.batch_size (the global batch) and data.image_size; called by the Recipe's validation."""

    def chance_loss(self, batch_size: int) -> float | None:
        """The loss of an encoder that tells no image from another (e.g. ln K for an InfoNCE over K candidates),
        for the collapse watch of the health monitor; None when the loss has no such value."""
        return None

    # ------------------------------------------------------------------------------------------ torch hooks

    def build(self, encoder: Encoder, ctx: BuildContext) -> dict[str, nn.Module]:
        """The method's modules besides the encoder (heads, momentum copies, queues, banks), by name; they
        become `PretextModel.parts` (checkpointed, optimised where they require grad). Draw initial weights from
        the global torch generator only: pretraining seeds it from run.seed before calling this."""
        raise NotImplementedError(f"{type(self).__name__} must implement build()")

    def forward(self, model: PretextModel, views: list[Tensor], index: Tensor, progress: Progress) -> StepOutput:
        """One training step's loss and what the monitors read, from the sampler's views (`view_groups` order)
        and the images' data set indices."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def after_step(self, model: PretextModel, progress: Progress) -> None:
        """Runs after each applied optimizer step with the progress that step ran at (EMA targets)."""

    def warnings(self, model: PretextModel, ctx: BuildContext) -> list[str]:
        """Lines to print once when the run starts (e.g. MoCo without shuffle-BN)."""
        return []


def _method_dispatch() -> Dispatch:
    return Dispatch(registry.PRETEXTS, "method", DEFAULT_METHOD, MethodSettings)


def default_method() -> MethodSettings:
    """[pretext] when a recipe has none: the default method with its defaults."""
    cls = _method_dispatch().resolve(DEFAULT_METHOD)
    assert cls is not None, "the built-in default method is not installed (pip install -e .)"
    return cls.model_validate({"method": DEFAULT_METHOD})  # type: ignore[return-value]


# The Recipe's field type: any method's settings, picked by `method`, serialised with the subclass's fields.
PretextConfig = Annotated[SerializeAsAny[MethodSettings], WrapValidator(_method_dispatch())]


def method_settings(table: dict[str, Any]) -> MethodSettings:
    """A [pretext] table (e.g. from a model's config.json) validated as the settings of the method it names."""
    from pydantic import TypeAdapter

    return TypeAdapter(PretextConfig).validate_python(table)
