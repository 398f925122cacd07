"""Learning-rate schedules as pure functions of the (fractional) epoch, so resume needs no scheduler state."""

from __future__ import annotations

import math
from collections.abc import Sequence


def lr_at(base_lr: float, epoch: float, epochs: int, schedule: str = "cosine",
          milestones: Sequence[int] = (), warmup_epochs: int = 0) -> float:
    """The lr at `epoch` (may be fractional).

    cosine: MoCo's lr·½(1 + cos(π·epoch/epochs)); step: ×0.1 at each milestone (main_lincls.py);
    constant: lr. A linear warm-up over `warmup_epochs` precedes any of them.
    """
    if warmup_epochs and epoch < warmup_epochs:
        return base_lr * (epoch + 1) / (warmup_epochs + 1)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "step":
        return base_lr * 0.1 ** sum(epoch >= m for m in milestones)
    return base_lr
