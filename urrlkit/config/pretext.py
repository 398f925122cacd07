"""The [pretext] section: the self-supervised method and its weighted augmentation families (paper Eq. 2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from urrlkit import registry
from urrlkit.catalog import family_mix
from urrlkit.config.families import FamilySpec
from urrlkit.config.sections import Section


class PretextConfig(Section):
    method: str = Field("moco_v2", description="a registered pretext method (urrlkit.registry.PRETEXTS); built in: "
                        "moco_v2, instdis, pirl")
    queue_size: int = Field(65536, ge=1, description="MoCo negatives K / memory-bank NCE negatives")
    momentum: float = Field(0.999, ge=0, le=1, description="key encoder / memory bank momentum")
    temperature: float = Field(0.2, gt=0)
    head_hidden: int | None = Field(None, ge=1, description="MLP head hidden width; None = feature dim")
    head_dim: int = Field(128, ge=1)
    mlp: bool = True
    bn_groups: int | Literal["auto"] = Field(
        1, description="MoCo shuffle-BN: key-encoder BN statistics over this many groups per process, the keys "
        "shuffled across groups and processes; auto = 8 / processes (the paper's 8 GPUs whatever the launch)")
    views: int = Field(2, ge=2)
    pirl_lambda: float = Field(0.5, ge=0, le=1, description="PIRL weight of the view-vs-memory term")
    negatives: int | None = Field(None, ge=1, description="memory-bank negatives per image; None = queue_size")
    bank_loss: Literal["nce", "infonce"] = Field("nce", description="memory-bank objective (instdis, pirl)")
    jigsaw_grid: int = Field(3, ge=0, description="PIRL I^t: grid×grid jigsaw patches; 0 = the whole view")
    p: float | None = Field(None, ge=0, le=1, description="shorthand: {augmix_allop: p, moco_v2: 1 - p}")
    families: list[FamilySpec] = Field(default_factory=list)

    @field_validator("method", mode="before")
    @classmethod
    def _known_method(cls, v: Any) -> Any:
        choices = registry.PRETEXTS.in_order()
        if isinstance(v, str) and v in registry.PRETEXTS:
            return v
        # Worded as a fixed choice of values (format_validation_error's literal_error line), which it was.
        expected = " or ".join(filter(None, [", ".join(map(repr, choices[:-1])), *map(repr, choices[-1:])]))
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})

    @field_validator("bn_groups", mode="before")
    @classmethod
    def _groups_or_auto(cls, v: Any) -> Any:
        # One clear line instead of Pydantic's two union-member errors.
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError(f"expected a positive integer or 'auto', got {v!r}")

    @model_validator(mode="after")
    def _resolve_families(self) -> PretextConfig:
        if self.p is not None and self.families:
            raise ValueError("give either p (the paper's two-family shorthand) or families, not both")
        if self.p is None and not self.families:
            # model_construct: the default needs no re-validation, and a ValidationError raised in here would
            # surface with a location relative to FamilySpec ("name") instead of the user's dotted path.
            self.__dict__["families"] = [FamilySpec.model_construct(name="moco_v2", weight=1.0, params={})]
        if self.families and sum(f.weight for f in self.families) <= 0:
            raise ValueError("families: the weights must not all be zero")
        return self

    def family_weights(self) -> list[FamilySpec]:
        """The weighted family list, with `p` expanded by paper Eq. 2 (catalog/family_mix.py `family_weights`)."""
        if self.p is not None:
            return [FamilySpec(name=name, weight=w) for name, w in family_mix.family_weights(self.p)]
        return list(self.families)
