"""The [optim] section: optimizer, learning rate (absolute or by the linear scaling rule), schedule, epochs,
mixed precision and checkpointing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from urrlkit.config.sections import Section

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
