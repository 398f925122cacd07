"""The Section base of every recipe section, and the [run] and [data] sections. [model], [pretext], its families
and [optim] have modules of their own in this package; the Recipe root (config/recipe.py) holds one of each."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from urrlkit import registry


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


def _scalars(params: Any) -> Any:
    """A params table's values must be finite numbers, booleans or strings. Checked before the union type: Pydantic
    would report an inf or a table once per union member, at '<key>.float'."""
    for key, value in (params.items() if isinstance(params, dict) else ()):
        if isinstance(value, float) and not math.isfinite(value):
            raise _error_at(key, f"{value!r} is not a finite number")
        if not isinstance(value, bool | int | float | str):
            raise _error_at(key, f"expected a number, true/false or a string, got {value!r}")
    return params
