"""Typed evaluation results: what every evaluation suite returns and what the CLI table, the model card,
`urrl report` and `urrl replica` read. Torch-free and low in the layer order (after the catalog, before hub/),
so that hub/'s model card reads them too.

`EvalResults.to_dict()` is the results.json layout (docs/evaluation.md) key for key, in the same order; a file
written by an older urrlkit, with fewer keys, reads back and writes back only the keys it had (`exclude_unset`),
and keys this version does not know are kept (`extra="allow"`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from urrlkit.engine.untrusted import read_json
from urrlkit.errors import UrrlError


class Result(BaseModel):
    """One suite's (or one file's) results. Fields are optional so that older, partial files still read."""

    model_config = ConfigDict(extra="allow")

    def to_dict(self) -> dict[str, Any]:
        """The JSON layout: the keys that were given, in field order, then unknown keys as they came."""
        return self.model_dump(exclude_unset=True)


class CleanResult(Result):
    top1: float | None = None
    n: int | None = None


class CalibrationResult(Result):
    rms: float | None = None
    rms_legacy: float | None = None
    ece: float | None = None
    bin_size: int | None = None
    ece_bins: int | None = None
    n: int | None = None
    reliability: dict[str, Any] | None = None


class PGDResult(Result):
    """`adversarial`: L2-PGD robust and clean top-1 (%) on the attack subset, with the settings used."""

    robust_top1: float | None = None
    clean_top1: float | None = None
    eps: float | None = None
    steps: int | None = None
    step_size: float | None = None
    random_start: bool | None = None
    use_best: bool | None = None
    norm: str | None = None
    attack: str | None = None
    n: int | None = None
    seconds: float | None = None


class AutoAttackResult(Result):
    """`autoattack`: AutoAttack (fra31/auto-attack, standard version) robust and clean top-1 (%)."""

    robust_top1: float | None = None
    clean_top1: float | None = None
    eps: float | None = None
    norm: str | None = None
    version: str | None = None
    n: int | None = None
    seed: int | None = None
    seconds: float | None = None


class CorruptionScore(Result):
    errors: list[float] | None = None
    ce: float | None = None
    rms: list[float] | None = None
    n: int | None = None


class CorruptionResult(Result):
    benchmark: str | None = None
    source: str | None = None
    severities: list[int] | None = None
    corruptions: list[str] | None = None
    error: float | None = None
    mce: float | None = None
    relative_mce: float | None = None
    rms_calibration: float | None = None
    rms_calibration_pooled: float | None = None
    bin_size: int | None = None
    per_corruption: dict[str, CorruptionScore] | None = None
    frost_textures: str | None = None


class Metrics(Result):
    """One entry per suite that ran, in the order the suites run."""

    clean: CleanResult | None = None
    calibration: CalibrationResult | None = None
    adversarial: PGDResult | None = None
    autoattack: AutoAttackResult | None = None
    corruptions: CorruptionResult | None = None


class EvalResults(Result):
    """A whole results.json."""

    model: str | None = None
    recipe_hash: str | None = None
    dataset: str | None = None
    image_size: int | None = None
    test_limit: int | None = None
    urrlkit_version: str | None = None
    created: str | None = None
    device: str | None = None
    metrics: Metrics

    @classmethod
    def from_dict(cls, data: Any, source: str = "results") -> EvalResults:
        """Validate a results dict (UrrlError naming `source` and the field when it is not one)."""
        if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
            raise UrrlError(f"{source}: not a urrlkit results file (no 'metrics')")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UrrlError(f"{source}: {where}: {err['msg']}") from None


def read_results(path: Path) -> EvalResults:
    """A results.json as `EvalResults` (UrrlError on a missing, malformed or foreign file)."""
    path = Path(path)
    return EvalResults.from_dict(read_json(path, "eval results", error=UrrlError), str(path))


def write_results(results: EvalResults, path: Path) -> None:
    """results.json, indented as urrl eval has always written it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results.to_dict(), indent=2))
    except OSError as exc:
        raise UrrlError(f"{path.parent}: cannot write results ({exc.strerror})") from None


__all__ = ["AutoAttackResult", "CalibrationResult", "CleanResult", "CorruptionResult", "CorruptionScore",
           "EvalResults", "Metrics", "PGDResult", "Result", "read_results", "write_results"]
