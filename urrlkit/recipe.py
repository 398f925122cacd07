"""The TOML recipe DSL: Pydantic models, `extends` composition, `--set` overrides and one-line errors.

A recipe is the single home of every hyperparameter. `load(path, overrides)` returns a validated `Recipe`;
any problem raises `RecipeError` whose message names the file and the dotted path at fault.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

import urrlkit.catalog  # noqa: F401  (declares the built-in registry entries, without importing torch)
from urrlkit import registry
from urrlkit.catalog import family_mix
from urrlkit.errors import RecipeError
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


class RunConfig(Section):
    name: str = Field("run", min_length=1, max_length=200,
                      description="folder under output_dir; one path component (no '/', '\\', '..')")
    # numpy's global generator (seeded by accelerate.set_seed) takes seeds below 2**32.
    seed: int = Field(0, ge=0, le=2**32 - 1, strict=True)  # strict: "7" and true are typos, not seeds
    output_dir: Path = Path("runs")
    trackers: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=lambda: ["tensorboard"], description="Accelerate trackers besides metrics.jsonl")

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
        "auto", description="where pretraining decodes JPEGs of file-backed data sets with crop_from = 'original': "
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
        key = named[0] if named else None
        if key is not None and msg.startswith(key):
            msg = msg[len(key):].lstrip(" :")
        raise _error_at(f"{where}.params" + (f".{key}" if key else ""),
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


DEFAULT_LR = 0.03  # main_moco.py's --lr at its default batch of 256


def scaled_lr(lr_per_256: float, batch: int) -> float:
    """The linear lr scaling rule (Goyal et al. 2017) as the MoCo README applies it: lr = lr_per_256 · batch / 256."""
    return lr_per_256 * batch / 256


class OptimConfig(Section):
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float | None = Field(None, gt=0, description=f"absolute learning rate; {DEFAULT_LR} when lr_per_256 is "
                             "not given either")
    lr_per_256: float | None = Field(None, gt=0, description="learning rate per 256 images: lr = lr_per_256 × "
                                     "data.batch_size × grad_accum / 256 (the linear scaling rule)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    milestones: list[int] = Field(default_factory=list, description="epochs at which lr × 0.1 (step)")
    epochs: int = Field(200, ge=1)
    warmup_epochs: int = Field(0, ge=0)
    grad_accum: int = Field(1, ge=1)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = each epoch")
    log_every: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _one_lr(self) -> OptimConfig:
        if self.lr is not None and self.lr_per_256 is not None:
            raise ValueError(f"give either lr (absolute, here {self.lr}) or lr_per_256 (scaled by the batch, here "
                             f"{self.lr_per_256}), not both")
        if self.lr is None and self.lr_per_256 is None:
            self.__dict__["lr"] = DEFAULT_LR
        return self

    def effective_lr(self, batch_size: int) -> float:
        """The learning rate of a run whose global batch is `batch_size` (data.batch_size): gradient
        accumulation averages grad_accum batches, so one optimizer step sees batch_size × grad_accum images."""
        if self.lr_per_256 is None:
            return float(self.lr)  # type: ignore[arg-type]
        return scaled_lr(self.lr_per_256, batch_size * self.grad_accum)


class NoReg(Section):
    type: Literal["none"] = "none"


class L2SPReg(Section):
    type: Literal["l2sp"] = "l2sp"
    alpha: float = Field(0.01, ge=0)
    beta: float = Field(0.01, ge=0)
    params: Literal["weights", "all"] = Field(
        "weights", description="weights: conv/linear weight tensors (Li et al.'s code); all: BN γ/β and biases too")


class SimReg(Section):
    type: Literal["sim"] = "sim"
    weight: float = Field(1.0, ge=0)
    norm: Literal["fro", "l1", "mse"] = "fro"
    normalize: bool = Field(False, description="L2-normalise features before the dot products")


class AdvReg(Section):
    type: Literal["adversarial"] = "adversarial"
    eps: float = Field(0.5, ge=0)
    steps: int = Field(7, ge=1)
    step_size: float | None = Field(None, gt=0)
    random_start: bool = True


class CustomReg(Section):
    type: Literal["custom"] = "custom"
    name: str
    params: dict[str, float | int | bool | str] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _scalar_params(cls, v: Any) -> Any:
        return _scalars(v)


Regularizer = Annotated[NoReg | L2SPReg | SimReg | AdvReg | CustomReg, Field(discriminator="type")]


class ScheduleConfig(Section):
    """Optimisation of a supervised stage (linear evaluation or fine-tuning)."""

    epochs: int = Field(100, ge=1)
    lr: float = Field(0.01, gt=0)
    batch_size: int = Field(256, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "step"
    milestones: list[int] = Field(default_factory=list)
    augment: Literal["crop_flip", "none"] = "crop_flip"


class LinearEvalConfig(ScheduleConfig):
    enabled: bool = True
    knn_k: int = Field(20, ge=0, description="kNN monitor neighbours; 0 = off")


class FinetuneConfig(ScheduleConfig):
    protocol: Literal["full", "linear"] = "full"
    dataset: str | None = Field(None, description="downstream data set; None = data.dataset")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="held out of the training split only while a sweep "
                                "chooses settings; the final model trains on the full split")
    select: Literal["clean", "robust", "mix"] = Field(
        "clean", description="sweep criterion on the validation split: top-1, L2-PGD robust top-1 "
        "(eval.adversarial settings), or (1 − w)·clean + w·robust with w = select_robust_weight")
    select_robust_weight: float = Field(0.5, ge=0, le=1, description="w of select = 'mix'")
    regularizer: Regularizer = Field(default_factory=NoReg)
    sweep: dict[str, list[float]] = Field(default_factory=dict,
                                          description="e.g. {'regularizer.weight': [...]}")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str | None) -> str | None:
        return None if v is None else _check_registered(registry.DATASETS, v)


class CorruptionEval(Section):
    benchmark: Literal["cifar10-c", "cifar100-c", "imagenet-c", "tiny-imagenet-c", "generated"] = "generated"
    root: Path | None = Field(None, description="official set on disk; None = generate from the test split")
    corruptions: list[str] | None = None
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    limit: int | None = Field(None, ge=1, description="images per corruption and severity")

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, v: list[str] | None) -> list[str] | None:
        for name in v or []:
            _check_registered(registry.CORRUPTIONS, name)
        return v

    @field_validator("severities")
    @classmethod
    def _severity_range(cls, v: list[int]) -> list[int]:
        bad = [s for s in v if not 1 <= s <= 5]
        if bad:
            raise ValueError(f"severities must be in 1..5, got {bad}")
        return v


class AdversarialEval(Section):
    eps: float = Field(0.5, ge=0)
    steps: int = Field(20, ge=1)
    step_size: float | None = Field(None, gt=0)
    random_start: bool = False
    use_best: bool = True
    limit: int | None = Field(1000, ge=1)


class CalibrationEval(Section):
    bin_size: int = Field(100, ge=1)


class EvalConfig(Section):
    suites: list[Literal["clean", "corruptions", "adversarial", "calibration"]] = Field(
        default_factory=lambda: ["clean", "calibration"]
    )
    batch_size: int = Field(256, ge=1)
    corruptions: CorruptionEval = Field(default_factory=CorruptionEval)
    adversarial: AdversarialEval = Field(default_factory=AdversarialEval)
    calibration: CalibrationEval = Field(default_factory=CalibrationEval)


class HubConfig(Section):
    repo_id: str | None = None
    private: bool = False
    license: str = "apache-2.0"
    tags: list[str] = Field(default_factory=lambda: ["urrlkit", "self-supervised", "robustness"])


class Recipe(Section):
    extends: str | None = Field(None, description="resolved at load time; kept for provenance")
    run: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretext: PretextConfig = Field(default_factory=PretextConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    linear_eval: LinearEvalConfig = Field(default_factory=LinearEvalConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    hub: HubConfig = Field(default_factory=HubConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        """What only the whole recipe knows: values that would otherwise validate and fail at run time."""
        p, batch = self.pretext, self.data.batch_size
        # MoCo enqueues one global batch of keys per step into a queue of K columns: facebookresearch/moco
        # builder.py _dequeue_and_enqueue asserts `self.K % batch_size == 0` on the keys gathered from every
        # process. data.batch_size is that global batch (gradient accumulation repeats it; it does not split it).
        if p.method == "moco_v2" and p.queue_size % batch:
            raise _error_at("pretext.queue_size", f"{p.queue_size} is not a multiple of data.batch_size = {batch} "
                            "(MoCo enqueues a whole global batch of keys per step)")
        # Every pretext forwards in bn_groups BN groups per process: an integer must divide the per-process batch
        # and so the global one. 'auto' depends on the process count, checked at launch
        # (pretext/common.py check_bn_groups).
        if isinstance(p.bn_groups, int) and batch % p.bn_groups:
            raise _error_at("pretext.bn_groups", f"{p.bn_groups} does not divide data.batch_size = {batch} (BN "
                            "statistics are computed over equal groups of each process's batch)")
        for i, fam in enumerate(p.families):
            if fam.params:
                _check_family_params(f"pretext.families[{i}]", fam, self.data.image_size)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data. `extends` is left out: the values it pulled in are already here,
        and a relative file name would not resolve from wherever this dict is saved and re-loaded."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"extends"})

    def to_toml(self) -> str:
        """Self-contained TOML that loads back to an equal recipe; provenance goes into a comment."""
        head = f"# resolved recipe (extends {self.extends!r} applied)\n" if self.extends else ""
        return head + tomli_w.dumps(self.to_dict())

    def digest(self) -> str:
        """A short stable hash of the resolved recipe (recorded in results and model cards)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def run_dir(self) -> Path:
        return self.run.output_dir / self.run.name


# ----------------------------------------------------------------------------------------------- loading

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Editors and terminals jump to 'file:line:col'; tomllib only puts the position in its message.
        msg = str(exc)
        if m := _TOML_POS.search(msg):
            where = f"{path}:{m[1]}:{m[2]}"
            msg = msg[: m.start()]
        elif m := _TOML_END.search(msg):
            lines = text.splitlines() or [""]
            where = f"{path}:{len(lines)}:{len(lines[-1]) + 1}"
            msg = msg[: m.start()] + " at end of file"
        else:
            where = str(path)
        raise RecipeError(f"{where}: malformed TOML: {msg}") from None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) in `over` replaces the base value.

    A table whose `type` tag changes (e.g. finetune.regularizer sim → l2sp) is replaced whole: the old
    variant's keys (sim's `weight`) mean nothing to the new one and would only be rejected as unknown."""
    out = dict(base)
    for key, value in over.items():
        prev = out.get(key)
        if isinstance(value, dict) and isinstance(prev, dict) and not _retagged(prev, value):
            out[key] = deep_merge(prev, value)
        else:
            out[key] = value
        if (other := _ALTERNATIVE.get(key)) is not None and other not in over:
            out.pop(other, None)
    return out


# Keys that state one value two ways: a layer (an extending file, a --set) giving one replaces the other that a
# base gave; one file giving both is an error (OptimConfig).
_ALTERNATIVE = {"lr": "lr_per_256", "lr_per_256": "lr"}


def _retagged(base: dict[str, Any], over: dict[str, Any]) -> bool:
    return "type" in base and "type" in over and base["type"] != over["type"]


def _resolve(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read `path` and, recursively, the file its `extends` names (relative to `path`'s folder).
    Messages use `path` as the user spelled it; the resolved path only detects cycles."""
    real = path.resolve()
    if real in seen:
        chain = " -> ".join(p.name for p in (*seen, real))
        raise RecipeError(f"{path}: circular extends ({chain})")
    raw = _read_toml(path)
    parent = raw.get("extends")
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent:
        raise RecipeError(f"{path}: extends: expected a recipe file name string, got {parent!r}")
    parent_path = path.parent / parent
    if not parent_path.is_file():
        raise RecipeError(f"{path}: extends: recipe file not found: {parent_path}")
    base = _resolve(parent_path, (*seen, real))
    merged = deep_merge(base, raw)
    merged["extends"] = parent
    return merged


def parse_override(item: str) -> tuple[list[str], Any]:
    """'a.b=value' → (['a', 'b'], value) with value parsed as TOML (bare words become strings)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    keys = [k.strip() for k in key.split(".")]
    if not sep or not key or not all(keys):
        raise RecipeError(f"--set {item!r}: expected KEY=VALUE with a dotted KEY, for example optim.lr=0.1")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set {item!r}: {k!r} is a value, not a table")
            node = child
        if keys[-1] == "type" and node.get("type", value) != value:
            node.clear()  # a new variant (see deep_merge): follow with --set for its own keys
        node.pop(_ALTERNATIVE.get(keys[-1], ""), None)
        node[keys[-1]] = value
    return data


# ------------------------------------------------------------------------------------------ error lines


def _models_in(ann: Any) -> list[type[BaseModel]]:
    """The Pydantic models inside an annotation (through Optional, list[...], unions)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for a in get_args(ann) for m in _models_in(a)]


def _owner(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that owns the last key of `loc`. A discriminated union's tag, which Pydantic inserts into
    the location after the field name, picks the member."""
    model: type[BaseModel] | None = Recipe
    i = 0
    while i < len(loc) - 1:
        p = loc[i]
        if isinstance(p, int):
            i += 1
            continue
        field = model.model_fields.get(p) if model else None
        if field is None:
            return None
        members = _models_in(field.annotation)
        if len(members) > 1:
            tag = loc[i + 1]
            model = next((m for m in members if _tag(m) == tag), None)
            i += 2
        else:
            model = members[0] if members else None
            i += 1
    return model


def _tag(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("type")
    return field.default if field else None


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    skip_tag = False
    model: type[BaseModel] | None = Recipe
    for p in loc:
        if skip_tag:  # the discriminator tag Pydantic inserts is not a key the user wrote
            skip_tag = False
            continue
        if isinstance(p, int):
            parts.append(f"[{p}]")
            continue
        parts.append(("." if parts else "") + str(p))
        field = model.model_fields.get(p) if model else None
        members = _models_in(field.annotation) if field else []
        skip_tag = len(members) > 1
        model = members[0] if len(members) == 1 else None
    return "".join(parts)


def _bounds(loc: tuple[Any, ...]) -> str:
    """'0 <= p <= 1' from the Field constraints of the key at `loc` ('' when unknown)."""
    owner = _owner(loc)
    key = loc[-1]
    field = owner.model_fields.get(key) if owner and isinstance(key, str) else None
    if field is None:
        return ""
    lo = hi = None
    for c in field.metadata:
        if getattr(c, "ge", None) is not None:
            lo = ("<=", c.ge)
        elif getattr(c, "gt", None) is not None:
            lo = ("<", c.gt)
        if getattr(c, "le", None) is not None:
            hi = ("<=", c.le)
        elif getattr(c, "lt", None) is not None:
            hi = ("<", c.lt)
    if lo and hi:
        return f"{lo[1]} {lo[0]} {key} {hi[0]} {hi[1]}"
    if lo:
        return f"{key} {lo[0].replace('<', '>')} {lo[1]}"
    if hi:
        return f"{key} {hi[0]} {hi[1]}"
    return ""


def _choices(expected: str) -> list[str]:
    """["no", "fp16", "bf16"] from Pydantic's "'no', 'fp16' or 'bf16'"."""
    return [c.strip().strip("'\"") for c in re.split(r",| or ", expected) if c.strip()]


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line for the first problem: `source: dotted.path: what is wrong; allowed: …`."""
    errors = err.errors()
    first = errors[0]
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    loc = tuple(first["loc"])
    where = _dotted(loc) or "(top level)"
    kind = first["type"]
    ctx = first.get("ctx") or {}
    value = first.get("input")
    if kind == "extra_forbidden":
        owner = _owner(loc)
        allowed = [k for k in owner.model_fields if k != "type"] if owner else []
        hint = nearest(str(loc[-1]), allowed)
        return f"{source}: unknown key {where}{hint}; allowed here: {', '.join(allowed) or 'none'}{more}"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        bounds = _bounds(loc) or first["msg"].removeprefix("Input should be ")
        return f"{source}: {where} = {value!r} is out of range; allowed: {bounds}{more}"
    if kind in {"literal_error", "enum"}:
        choices = _choices(ctx.get("expected", ""))
        hint = nearest(value, choices) if isinstance(value, str) else ""
        return f"{source}: {where} = {value!r} is not allowed{hint}; allowed: {', '.join(choices)}{more}"
    if kind == "union_tag_invalid":
        choices = _choices(ctx.get("expected_tags", ""))
        tag = ctx.get("tag")
        disc = str(ctx.get("discriminator", "type")).strip("'")
        hint = nearest(str(tag), choices)
        return f"{source}: {where}.{disc} = {tag!r} is not allowed{hint}; allowed: {', '.join(choices)}{more}"
    if kind == "union_tag_not_found":
        disc = str(ctx.get("discriminator", "type")).strip("'")
        owner = _owner(loc)
        field = owner.model_fields.get(loc[-1]) if owner and isinstance(loc[-1], str) else None
        tags = [str(_tag(m)) for m in _models_in(field.annotation)] if field else []
        return f"{source}: {where}.{disc} is missing; allowed: {', '.join(tags) or '?'}{more}"
    if kind == "missing":
        return f"{source}: {where} is required but missing{more}"
    if kind == "finite_number":
        return f"{source}: {where} = {value!r} is not allowed; allowed: a finite number{more}"
    if kind == "urrl_at_key":
        at = ".".join(x for x in (where if loc else "", ctx["key"]) if x)
        return f"{source}: {at}: {ctx['message']}{more}"
    msg = first["msg"].removeprefix("Value error, ")
    # Our own validators already quote the value; Pydantic's type errors don't.
    shown = kind != "value_error" and not isinstance(value, dict)
    extra = f" (got {value!r})" if shown and "input" in first else ""
    return f"{source}: {where}: {msg}{extra}{more}"


def validate_dict(data: dict[str, Any], source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_validation_error(source, err)) from None


def load(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file, resolve `extends`, apply `--set` overrides and validate."""
    path = Path(path)
    data = apply_overrides(_resolve(path), overrides or [])
    return validate_dict(data, str(path))


def to_file(recipe: Recipe, path: Path) -> None:
    path.write_text(recipe.to_toml(), encoding="utf-8")
