"""Recipe sections of the supervised and evaluation stages: fine-tuning regularizers, linear-evaluation and
fine-tuning schedules, the robustness evaluation suites and the Hub upload settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator
from pydantic_core import PydanticCustomError

from urrlkit import registry
from urrlkit.config.sections import Section, _check_registered, _scalars


class RegSection(Section):
    # No docstring: docs/gen_recipe_reference.py would print it under every regularizer table.

    def builder_args(self) -> tuple[str, dict[str, Any]]:
        """The registered regularizer's name and the plain keyword values its builder takes
        (finetune/regularizers.py): the fine-tuning stage passes these, never this object."""
        return self.type, self.model_dump(exclude={"type"})  # type: ignore[attr-defined]


class NoReg(RegSection):
    type: Literal["none"] = "none"


class L2SPReg(RegSection):
    type: Literal["l2sp"] = "l2sp"
    alpha: float = Field(0.01, ge=0)
    beta: float = Field(0.01, ge=0)
    params: Literal["weights", "all"] = Field(
        "weights", description="weights: conv/linear weight tensors (Li et al.'s code); all: BN γ/β and biases too")


class SimReg(RegSection):
    type: Literal["sim"] = "sim"
    weight: float = Field(1.0, ge=0)
    norm: Literal["fro", "l1", "mse"] = "fro"
    normalize: bool = Field(False, description="L2-normalise features before the dot products")
    # The paper leaves both open; the defaults are measured (benchmarks/sr_modes.py, docs/finetune.md).
    frozen_bn: Literal["eval", "train", "match"] = Field(
        "eval", description="how f*'s BatchNorm layers normalise: eval = running statistics, as f* is tested "
        "(S ≠ S* before any update); train = the batch's statistics (running ones never updated); match = as the "
        "tuned encoder's layer at each step (train in full fine-tuning, eval for the linear protocol)")
    scale: Literal["none", "batch"] = Field(
        "batch", description="none: the norm as written, growing with the batch size B; batch: per entry of "
        "S − S* (fro / B = its RMS, l1 / B², mse unchanged), so λ means the same at any B (λ_batch = B·λ_none)")


class AdvReg(RegSection):
    type: Literal["adversarial"] = "adversarial"
    eps: float = Field(0.5, ge=0)
    steps: int = Field(7, ge=1)
    step_size: float | None = Field(None, gt=0)
    random_start: bool = True


class CustomReg(RegSection):
    type: Literal["custom"] = "custom"
    name: str
    params: dict[str, float | int | bool | str] = Field(default_factory=dict)

    def builder_args(self) -> tuple[str, dict[str, Any]]:
        return self.name, dict(self.params)

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


class AutoAttackEval(Section):
    """The autoattack suite (fra31/auto-attack; RobustBench's CIFAR-10 L2 setting by default)."""

    eps: float = Field(0.5, ge=0, description="on [0, 1] pixels (normalisation is inside the model)")
    norm: Literal["L2", "Linf", "L1"] = "L2"
    version: Literal["standard", "plus", "rand"] = "standard"
    limit: int | None = Field(1000, ge=1, description="test images attacked: the same fixed random subset "
                              "as eval.adversarial.limit picks")


class CalibrationEval(Section):
    bin_size: int = Field(100, ge=1)


def _known_suite(name: str) -> str:
    """A registered evaluation suite (urrlkit.registry.SUITES), reported like a Literal choice: with the index,
    the nearest name and the allowed ones in the order they run."""
    if name not in registry.SUITES:
        names = registry.SUITES.in_order()
        expected = ", ".join(repr(n) for n in names[:-1]) + f" or {names[-1]!r}"
        raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
    return name


class EvalConfig(Section):
    suites: list[Annotated[str, AfterValidator(_known_suite)]] = Field(
        default_factory=lambda: ["clean", "calibration"],
        description="registered evaluation suites (urrlkit.registry.SUITES): clean, calibration, adversarial, "
        "autoattack, corruptions, cifar10-c, cifar100-c, imagenet-c, tiny-imagenet-c, all",
    )
    batch_size: int = Field(256, ge=1)
    corruptions: CorruptionEval = Field(default_factory=CorruptionEval)
    adversarial: AdversarialEval = Field(default_factory=AdversarialEval)
    autoattack: AutoAttackEval = Field(default_factory=AutoAttackEval)
    calibration: CalibrationEval = Field(default_factory=CalibrationEval)


class HubConfig(Section):
    repo_id: str | None = None
    private: bool = False
    license: str = "apache-2.0"
    tags: list[str] = Field(default_factory=lambda: ["urrlkit", "self-supervised", "robustness"])
