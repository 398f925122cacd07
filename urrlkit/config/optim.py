"""The [optim] section: optimizer and its parameter groups, learning rate (absolute, by the linear or by the
square-root scaling rule), lr and weight-decay schedules, gradient clipping, epochs, mixed precision and
checkpointing."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from urrlkit.config.sections import Section, _error_at

DEFAULT_LR = 0.03  # main_moco.py's --lr at its default batch of 256
LR_RULES = ("lr", "lr_per_256", "lr_sqrt")


def scaled_lr(lr_per_256: float, batch: int) -> float:
    """The linear lr scaling rule (Goyal et al. 2017) as the MoCo README applies it: lr = lr_per_256 · batch / 256."""
    return lr_per_256 * batch / 256


def sqrt_scaled_lr(lr_sqrt: float, batch: int) -> float:
    """SimCLR's square-root lr scaling rule: lr = lr_sqrt · √batch (google-research/simclr model_util.py
    `learning_rate_schedule`, `learning_rate_scaling = 'sqrt'`; its README's 0.075 · √4096 = 4.8)."""
    return lr_sqrt * math.sqrt(batch)


class OptimConfig(Section):
    optimizer: Literal["sgd", "adamw", "lars"] = Field(
        "sgd", description="sgd (momentum), adamw (betas) or lars (SGD momentum with timm's layer-wise trust "
        "ratio, lars_trust)")
    lr: float | None = Field(None, gt=0, description=f"absolute learning rate; {DEFAULT_LR} when neither "
                             "lr_per_256 nor lr_sqrt is given")
    lr_per_256: float | None = Field(None, gt=0, description="learning rate per 256 images: lr = lr_per_256 × "
                                     "data.batch_size × grad_accum / 256 (the linear scaling rule)")
    lr_sqrt: float | None = Field(None, gt=0, description="lr = lr_sqrt × √(data.batch_size × grad_accum) "
                                  "(SimCLR's square-root scaling rule, 0.075 for small batches)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd and lars")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adamw's (β1, β2), each in [0, 1)")
    lars_trust: float = Field(0.001, gt=0, le=1, description="lars' trust coefficient η (SimCLR's eeta, "
                              "MoCo v3's trust_coefficient)")
    weight_decay: float = Field(1e-4, ge=0)
    weight_decay_end: float | None = Field(None, ge=0, description="weight decay at the end of training, "
                                           "reached by a cosine from weight_decay (DINO: 0.04 → 0.4) at the "
                                           "schedule_per cadence; none = constant")
    exclude_norm_bias: bool = Field(False, description="parameters with ndim ≤ 1 (biases, BatchNorm/LayerNorm "
                                    "weights) get no weight decay and no LARS adaptation (SimCLR, MoCo v3, "
                                    "DINO); false: every parameter decays (MoCo v2)")
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    schedule_per: Literal["epoch", "step"] = Field(
        "epoch", description="epoch: the lr set once per epoch, warm-up lr·(e+1)/(warmup+1) (MoCo v2); step: "
        "before every step from the fractional epoch, warm-up linear from 0 and cosine over the epochs after "
        "it (MoCo v3, SimCLR)")
    milestones: list[int] = Field(default_factory=list, description="epochs at which lr × 0.1 (step)")
    epochs: int = Field(200, ge=1)
    warmup_epochs: int = Field(0, ge=0)
    clip_grad: float | None = Field(None, gt=0, description="clip the gradients to this L2 norm before each "
                                    "optimizer step; none = no clipping")
    clip_grad_mode: Literal["global", "per_param"] = Field(
        "global", description="global: one norm over all gradients; per_param: each parameter's own (DINO)")
    grad_accum: int = Field(1, ge=1)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = each epoch")
    log_every: int = Field(10, ge=1)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"each beta must be in [0, 1), got {list(betas)}")
        return betas

    @model_validator(mode="after")
    def _one_lr(self) -> OptimConfig:
        given = [f"{k} = {getattr(self, k)}" for k in LR_RULES if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError("give one of lr (absolute), lr_per_256 (linear rule) or lr_sqrt (square-root "
                             f"rule), not several: here {', '.join(given)}")
        if not given:
            self.__dict__["lr"] = DEFAULT_LR
        if self.weight_decay_end is not None and self.weight_decay == 0:
            raise _error_at("weight_decay_end", f"{self.weight_decay_end} needs a nonzero weight_decay to start "
                            "the schedule from (weight_decay is 0)")
        return self

    def effective_lr(self, batch_size: int) -> float:
        """The learning rate of a run whose global batch is `batch_size` (data.batch_size): gradient
        accumulation averages grad_accum batches, so one optimizer step sees batch_size × grad_accum images."""
        if self.lr_per_256 is not None:
            return scaled_lr(self.lr_per_256, batch_size * self.grad_accum)
        if self.lr_sqrt is not None:
            return sqrt_scaled_lr(self.lr_sqrt, batch_size * self.grad_accum)
        return float(self.lr)  # type: ignore[arg-type]

    def optimizer_kwargs(self) -> dict[str, Any]:
        """engine.optim.build_optimizer's keyword arguments beyond (name, lr, momentum, weight_decay)."""
        return {"exclude_norm_bias": self.exclude_norm_bias, "betas": self.betas, "trust": self.lars_trust}

    def loop_kwargs(self) -> dict[str, Any]:
        """engine.loop.LoopSpec's schedule and clipping fields that this section sets, beyond the lr schedule's
        (epochs, schedule, milestones, warmup_epochs) and the checkpoint / log cadence."""
        return {"schedule_per": self.schedule_per, "weight_decay": self.weight_decay,
                "weight_decay_end": self.weight_decay_end, "clip_grad": self.clip_grad,
                "clip_grad_mode": self.clip_grad_mode}
