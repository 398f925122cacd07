"""The Recipe root: one section per stage, the checks only the whole recipe can make, and its serialisations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from urrlkit.config.families import _check_family_params
from urrlkit.config.finetune_eval import EvalConfig, FinetuneConfig, HubConfig, LinearEvalConfig
from urrlkit.config.model import ModelConfig, default_backbone
from urrlkit.config.monitor import MonitorConfig
from urrlkit.config.optim import OptimConfig
from urrlkit.config.pretext import PretextConfig, default_method
from urrlkit.config.sections import (
    DataConfig,
    RunConfig,
    Section,
    _error_at,
)


class Recipe(Section):
    extends: str | None = Field(None, description="resolved at load time; kept for provenance")
    run: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=default_backbone)
    pretext: PretextConfig = Field(default_factory=default_method)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    linear_eval: LinearEvalConfig = Field(default_factory=LinearEvalConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    hub: HubConfig = Field(default_factory=HubConfig)

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        """What only the whole recipe knows: values that would otherwise validate and fail at run time."""
        p = self.pretext
        try:  # the method's own checks against the rest of the recipe (e.g. MoCo's queue vs the global batch)
            p.check(self.data.batch_size, self.data.image_size)
        except PydanticCustomError:
            raise  # already names its key
        except ValueError as exc:
            raise _error_at("pretext", str(exc)) from None
        for i, fam in enumerate(p.families):
            if fam.params:
                _check_family_params(f"pretext.families[{i}]", fam, self.data.image_size)
        return self

    @classmethod
    def from_recorded(cls, data: dict[str, Any]) -> Recipe:
        """A recipe as a run or a model recorded it, possibly by an older urrlkit (config/legacy.py)."""
        from urrlkit.config.legacy import upgrade

        return cls.model_validate(upgrade(data))

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
