"""The TOML recipe DSL: Pydantic models, `extends` composition, `--set` overrides and one-line errors.

A recipe is the single home of every hyperparameter. `load(path, overrides)` returns a validated `Recipe`;
any problem raises `RecipeError` whose message names the file and the dotted path at fault.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from urrlkit import registry
from urrlkit.errors import RecipeError
from urrlkit.registry import nearest


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_registered(reg: registry.Registry, name: str) -> str:
    registry.load_builtins()
    if name not in reg:
        raise ValueError(reg.unknown_message(name))
    return name


class RunConfig(Section):
    name: str = "run"
    seed: int = Field(0, ge=0)
    output_dir: Path = Path("runs")


class DataConfig(Section):
    dataset: str = "cifar10-sample"
    root: Path | None = None
    image_size: int = Field(32, ge=8, le=1024, description="network input size")
    load_size: int | None = Field(None, ge=8, le=2048, description="stored size before device crops")
    batch_size: int = Field(256, ge=1)
    workers: int = Field(0, ge=0)
    download: bool = False
    train_limit: int | None = Field(None, ge=1, description="use the first N training images")
    test_limit: int | None = Field(None, ge=1, description="use the first N test images")

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, v: str) -> str:
        return _check_registered(registry.DATASETS, v)

    @property
    def stored_size(self) -> int:
        return self.load_size or self.image_size


class ModelConfig(Section):
    backbone: str = "resnet18"
    small_stem: bool = Field(True, description="3x3 stride-1 conv1 without max-pool, for ≤ 64 px images")
    width: int | None = Field(None, ge=4, description="base width for the resnet_w* backbones")
    feature_dim: int | None = Field(None, ge=1, description="checked against the backbone when given")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, v: str) -> str:
        return _check_registered(registry.BACKBONES, v)


class FamilySpec(Section):
    name: str
    weight: float = Field(1.0, ge=0)
    params: dict[str, float | int | bool | str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_family(cls, v: str) -> str:
        return _check_registered(registry.FAMILIES, v)

    @model_validator(mode="after")
    def _known_params(self) -> FamilySpec:
        factory = registry.FAMILIES.get(self.name)
        sig = inspect.signature(factory)
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
    method: Literal["moco_v2", "instdis", "pirl"] = "moco_v2"
    queue_size: int = Field(65536, ge=1, description="MoCo negatives K / memory-bank NCE negatives")
    momentum: float = Field(0.999, ge=0, le=1, description="key encoder / memory bank momentum")
    temperature: float = Field(0.2, gt=0)
    head_hidden: int | None = Field(None, ge=1, description="MLP head hidden width; None = feature dim")
    head_dim: int = Field(128, ge=1)
    mlp: bool = True
    bn_groups: int = Field(1, ge=1, description="single-device shuffle-BN: BN statistics per group")
    views: int = Field(2, ge=2)
    pirl_lambda: float = Field(0.5, ge=0, le=1, description="PIRL weight of the view-vs-memory term")
    p: float | None = Field(None, ge=0, le=1, description="shorthand: {augmix_allop: p, moco_v2: 1 - p}")
    families: list[FamilySpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _resolve_families(self) -> PretextConfig:
        if self.p is not None and self.families:
            raise ValueError("give either p (the paper's two-family shorthand) or families, not both")
        if self.p is None and not self.families:
            self.__dict__["families"] = [FamilySpec(name="moco_v2", weight=1.0)]
        if self.families and sum(f.weight for f in self.families) <= 0:
            raise ValueError("families: the weights must not all be zero")
        return self

    def family_weights(self) -> list[FamilySpec]:
        """The weighted family list, with `p` expanded as paper Eq. 2 defines it."""
        if self.p is not None:
            return [
                FamilySpec(name="augmix_allop", weight=self.p),
                FamilySpec(name="moco_v2", weight=1.0 - self.p),
            ]
        return list(self.families)


class OptimConfig(Section):
    optimizer: Literal["sgd", "adamw", "lars"] = "sgd"
    lr: float = Field(0.03, gt=0)
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


class NoReg(Section):
    type: Literal["none"] = "none"


class L2SPReg(Section):
    type: Literal["l2sp"] = "l2sp"
    alpha: float = Field(0.01, ge=0)
    beta: float = Field(0.01, ge=0)


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
    val_fraction: float = Field(0.1, ge=0, lt=1)
    regularizer: Regularizer = Field(default_factory=NoReg)
    sweep: dict[str, list[float]] = Field(default_factory=dict, description="e.g. {'regularizer.weight': [...]}")

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

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def digest(self) -> str:
        """A short stable hash of the resolved recipe (recorded in results and model cards)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    @property
    def run_dir(self) -> Path:
        return self.run.output_dir / self.run.name


# ----------------------------------------------------------------------------------------------- loading


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts "(at line L, column C)" in the message; keep it on one line.
        raise RecipeError(f"{path}: malformed TOML: {exc}") from None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) in `over` replaces the base value."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise RecipeError(f"{path}: circular extends ({chain})")
    raw = _read_toml(path)
    parent = raw.get("extends")
    if parent is None:
        return raw
    if not isinstance(parent, str):
        raise RecipeError(f"{path}: extends must be a file name string, got {type(parent).__name__}")
    base = _resolve(path.parent / parent, (*seen, path))
    merged = deep_merge(base, raw)
    merged["extends"] = parent
    return merged


def parse_override(item: str) -> tuple[list[str], Any]:
    """'a.b=value' → (['a', 'b'], value) with value parsed as TOML (bare words become strings)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"--set {item!r}: expected KEY=VALUE, for example optim.lr=0.1")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set {item!r}: {k!r} is a value, not a table")
            node = child
        node[keys[-1]] = value
    return data


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in {"none", "l2sp", "sim", "adversarial", "custom"} and parts and parts[-1] == "regularizer":
            continue  # the discriminator tag Pydantic inserts is not a key the user wrote
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The Pydantic model that owns the last key of `loc` (for 'did you mean' suggestions)."""
    model: Any = Recipe
    for p in loc[:-1]:
        if isinstance(p, int) or model is None:
            continue
        field = model.model_fields.get(p)
        if field is None:
            return None
        ann = field.annotation
        model = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)),
                     None)
        if model is None and p == "regularizer":
            return None
    return model


def format_validation_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = tuple(first["loc"])
    where = _dotted(loc) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        owner = _model_at(loc)
        allowed = sorted(owner.model_fields) if owner else []
        hint = nearest(str(loc[-1]), allowed)
        return f"{source}: unknown key {where}{hint}; allowed here: {', '.join(allowed)}"
    msg = first["msg"].removeprefix("Value error, ")
    if kind == "literal_error" or kind == "union_tag_invalid":
        return f"{source}: {where}: {msg}"
    extra = f" (got {first['input']!r})" if "input" in first and not isinstance(first["input"], dict) else ""
    return f"{source}: {where}: {msg}{extra}"


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
