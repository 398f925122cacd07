"""Recipe sections of the pretraining stage: run, data, model and pretext (with its augmentation families); [optim]
is config/optim.py.

Each section is a Pydantic model; the Recipe root (config/recipe.py) holds one of each. Paper Eq. 2's family mix
is expanded by `PretextConfig.family_weights`.
"""

from __future__ import annotations

import inspect
import math
import re
import typing
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

import urrlkit.catalog  # noqa: F401  (declares the built-in registry entries, without importing torch)
from urrlkit import registry
from urrlkit.catalog import family_mix
from urrlkit.registry import nearest


class Section(BaseModel):
    # allow_inf_nan=False: no float in a recipe means anything as inf or nan (an infinite lr, temperature or
    # weight decay validated, then trained to NaN weights or divided by infinity).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _error_at(key: str, message: str) -> PydanticCustomError:
    """A validation error about `key`, a dotted path relative to the location of the validator that raises it
    (the whole recipe for Recipe's own checks): format_validation_error puts it in the error line."""
    return PydanticCustomError("urrl_at_key", "{message}", {"key": key, "message": message})


def _check_registered(reg: registry.Registry, name: str) -> str:
    if name not in reg:
        raise ValueError(reg.unknown_message(name))
    return name


def _tensorboard() -> list[Literal["tensorboard", "wandb"]]:
    """RunConfig.trackers' default (a named function: a lambda's list[str] is not the field's type)."""
    return ["tensorboard"]


class RunConfig(Section):
    name: str = Field("run", min_length=1, max_length=200,
                      description="folder under output_dir; one path component (no '/', '\\', '..')")
    # numpy's global generator (seeded by accelerate.set_seed) takes seeds below 2**32.
    seed: int = Field(0, ge=0, le=2**32 - 1, strict=True)  # strict: "7" and true are typos, not seeds
    output_dir: Path = Path("runs")
    trackers: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=_tensorboard, description="Accelerate trackers besides metrics.jsonl")

    @field_validator("name")
    @classmethod
    def _one_component(cls, v: str) -> str:
        # The run directory is output_dir / name: a separator, '..' or an absolute name would put it elsewhere.
        if "/" in v or "\\" in v or "\0" in v or v.strip() in {".", ".."} or v != v.strip():
            raise ValueError(f"{v!r} must be a single folder name (no '/', '\\', '..', NUL, or surrounding "
                             "spaces); put the location in run.output_dir")
        return v


class DataConfig(Section):
    dataset: str = "cifar10-sample"
    root: Path | None = None
    image_size: int = Field(32, ge=8, le=1024, description="network input size")
    load_size: int | None = Field(None, ge=8, le=2048, description="stored size (shorter side resize + centre "
                                  "crop): evaluation's Resize before CenterCrop(image_size), and what the training "
                                  "crops are drawn on when they come from stored images")
    # The reference pipelines (MoCo main_moco.py / main_lincls.py, AugMix imagenet.py) draw RandomResizedCrop on
    # the decoded photo; a stored centre square loses its sides and shifts the crop scale.
    crop_from: Literal["original", "stored"] = Field(
        "original", description="where training crops of file-backed data sets (image files, torchvision transfer "
        "sets) are drawn: on the original image, as the reference code does, or on the stored square; array "
        "data sets (CIFAR, npz, the sample) always use their stored arrays")
    batch_size: int = Field(256, ge=1)
    workers: int = Field(0, ge=0, description="DataLoader worker processes")
    augment_in: Literal["auto", "device", "workers"] = Field(
        "auto", description="where pretraining views are made: on the training device, or in the DataLoader "
        "workers (needs workers ≥ 1); auto = workers for a CPU run with workers ≥ 1, else device")
    decode: Literal["auto", "cpu", "device"] = Field(
        "auto", description="where pretraining and the supervised stages (their crops above 64 px) decode JPEGs of "
        "file-backed data sets with crop_from = 'original': "
        "in the workers (PIL), or on the training device (workers read bytes, nvJPEG decodes, boxes cut there; "
        "non-JPEG, CMYK and grayscale files still decode in the workers); auto = device on CUDA, else cpu")
    download: bool = False
    train_limit: int | None = Field(None, ge=1, description="use a fixed random subset (seed 0) of N training images")
    test_limit: int | None = Field(None, ge=1, description="use a fixed random subset (seed 0) of N test images")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        return _check_registered(registry.DATASETS, v)

    @model_validator(mode="after")
    def _workers_for_augment(self) -> DataConfig:
        if self.augment_in == "workers" and self.workers < 1:
            raise ValueError("augment_in = 'workers' needs workers ≥ 1")
        return self

    @property
    def stored_size(self) -> int:
        return self.load_size or self.image_size

    def augments_in_workers(self, device_type: str) -> bool:
        """Whether pretraining makes its views in the DataLoader workers on a device of this type
        (``"cpu"``, ``"cuda"``, …; see augment_in)."""
        if self.augment_in == "auto":
            return self.workers > 0 and device_type == "cpu"
        return self.augment_in == "workers"


class ModelConfig(Section):
    backbone: str = "resnet18"
    small_stem: bool = Field(True, description="3x3 stride-1 conv1 without max-pool, for ≤ 64 px images")
    width: int | None = Field(None, ge=4, description="base width for the resnet_w* backbones")
    feature_dim: int | None = Field(None, ge=1, description="checked against the backbone when given")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        return _check_registered(registry.BACKBONES, v)


def _scalars(params: Any) -> Any:
    """A params table's values must be finite numbers, booleans or strings. Checked before the union type: Pydantic
    would report an inf or a table once per union member, at '<key>.float'."""
    for key, value in (params.items() if isinstance(params, dict) else ()):
        if isinstance(value, float) and not math.isfinite(value):
            raise _error_at(key, f"{value!r} is not a finite number")
        if not isinstance(value, bool | int | float | str):
            raise _error_at(key, f"expected a number, true/false or a string, got {value!r}")
    return params


class FamilySpec(Section):
    name: str
    weight: float = Field(1.0, ge=0)
    params: dict[str, float | int | bool | str] = Field(
        default_factory=dict, description="keyword arguments of the family's factory; checked at validation "
        "against the family's ranges at data.image_size")

    @field_validator("params", mode="before")
    @classmethod
    def _scalar_params(cls, v: Any) -> Any:
        return _scalars(v)

    @field_validator("name")
    @classmethod
    def _known_family(cls, v: str) -> str:
        return _check_registered(registry.FAMILIES, v)

    @model_validator(mode="after")
    def _known_params(self) -> FamilySpec:
        sig = inspect.signature(registry.FAMILIES.check_target(self.name))
        allowed = [p for p in sig.parameters if p != "image_size"]
        if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return self
        for key in self.params:
            if key not in allowed:
                raise ValueError(
                    f"unknown parameter {key!r} for family {self.name!r}{nearest(key, allowed)}; "
                    f"allowed: {', '.join(allowed) or 'none'}"
                )
        return self


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


def _check_family_params(where: str, fam: FamilySpec, image_size: int) -> None:
    """Check the parameters as the family's factory will, so a parameter of the wrong type or outside the
    family's range is a validation error naming `<where>.params.<key>` instead of a crash at the first batch.
    Built-in families are checked by their torch-free checks (urrlkit/catalog/families.py); a user's registered
    factory is called once."""
    factory = registry.FAMILIES.check_target(fam.name)
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # a user's factory whose annotations do not resolve: no type check, the call still checks
        hints = {}
    for key, value in fam.params.items():
        if (problem := _type_problem(value, hints.get(key))) is not None:
            raise _error_at(f"{where}.params.{key}", f"{problem} (family {fam.name!r})")
    try:
        factory(image_size, **fam.params)
    except (ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        named = [k for k in fam.params if re.search(rf"\b{re.escape(k)}\b", msg)]
        param = named[0] if named else None
        if param is not None and msg.startswith(param):
            msg = msg[len(param):].lstrip(" :")
        raise _error_at(f"{where}.params" + (f".{param}" if param else ""),
                        f"{msg} (family {fam.name!r} at data.image_size = {image_size})") from None


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why `value` does not fit the factory annotation `hint` (None when it fits or the hint says nothing)."""
    if hint is None or hint is Any:
        return None
    members = [a for a in (get_args(hint) if get_args(hint) and typing.get_origin(hint) is not tuple else (hint,))
               if a is not type(None)]
    if not all(a in (bool, int, float, str) for a in members):
        return None  # tuples, callables, ...: left to the factory
    fits = (bool in members if isinstance(value, bool) else
            (int in members or float in members) if isinstance(value, int) else
            float in members if isinstance(value, float) else str in members)
    if fits:
        return None
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return f"expected {' or '.join(names[a] for a in members)}, got {value!r}"
