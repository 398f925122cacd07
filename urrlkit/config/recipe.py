"""The Recipe root: one section per stage, the checks only the whole recipe can make, and its serialisations."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import Field, model_validator

from urrlkit.config.families import _check_family_params
from urrlkit.config.finetune_eval import EvalConfig, FinetuneConfig, HubConfig, LinearEvalConfig
from urrlkit.config.model import ModelConfig
from urrlkit.config.monitor import MonitorConfig
from urrlkit.config.optim import OptimConfig
from urrlkit.config.pretext import PretextConfig
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
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretext: PretextConfig = Field(default_factory=PretextConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
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
