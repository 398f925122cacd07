"""What the training loop tells a step about where training stands (`Progress`), and what a pretraining step hands
back (`StepOutput`). Plain dataclasses without torch, so method settings (urrlkit/pretext/methods) can name them
without importing it.

Schedules that follow training (BYOL's and MoCo v3's momentum, DINO's teacher temperature and centring) read
`Progress`, never a counter of their own: it is derived from the loop's checkpointed position, so a resumed run
sees exactly the values an uninterrupted one saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class Progress:
    """The step about to run: `step` optimizer-loop steps (batches) are done before it, of `steps` in the run;
    `epoch` (0-based) of `epochs`, `step_in_epoch` of `steps_per_epoch` batches."""

    step: int
    steps: int
    epoch: int
    epochs: int
    step_in_epoch: int = 0
    steps_per_epoch: int = 1

    @property
    def fraction(self) -> float:
        """step / steps in [0, 1): the k / K of the BYOL and MoCo v3 cosine schedules."""
        return self.step / max(self.steps, 1)

    @property
    def epoch_float(self) -> float:
        """The fractional epoch, epoch + step_in_epoch / steps_per_epoch."""
        return self.epoch + self.step_in_epoch / max(self.steps_per_epoch, 1)


@dataclass
class StepOutput:
    """One pretraining step of a method: the loss to minimise; `features`, the backbone features f(x) of the
    first view (B, feature_dim), which the online linear probe trains on (detached there); `embeddings`, two
    views' projections (B, d) each, row i of both from the same image, which the representation-health
    monitor reads (alignment, uniformity, per-dimension std, effective rank), or None; `stats`, numbers to log
    (tensors, read back on log steps only)."""

    loss: Tensor
    features: Tensor | None = None
    embeddings: tuple[Tensor, Tensor] | None = None
    stats: dict[str, Tensor | float] = field(default_factory=dict)
