"""Learning-rate and weight-decay schedules as pure functions of the (fractional) epoch, so resume needs no
scheduler state."""

from __future__ import annotations

import math
from collections.abc import Sequence


def lr_at(base_lr: float, epoch: float, epochs: int, schedule: str = "cosine",
          milestones: Sequence[int] = (), warmup_epochs: int = 0) -> float:
    """The lr at `epoch`, set once per epoch (`optim.schedule_per = "epoch"`).

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


def lr_at_step(base_lr: float, epoch: float, epochs: int, schedule: str = "cosine",
               milestones: Sequence[int] = (), warmup_epochs: int = 0) -> float:
    """The lr of the iteration at fractional epoch `epoch` = e + i / iters_per_epoch (`optim.schedule_per =
    "step"`): a linear warm-up from 0, lr·epoch/warmup_epochs, then for cosine the half cycle over the
    remaining epochs, lr·½(1 + cos(π·(epoch − warmup)/(epochs − warmup))).

    This is facebookresearch/moco-v3 main_moco.py `adjust_learning_rate` called with `epoch + i /
    iters_per_epoch`, and google-research/simclr model_util.py `learning_rate_schedule` (global_step /
    warmup_steps · lr, then cosine_decay over total − warmup steps). facebookresearch/dino utils.py
    `cosine_scheduler` warms up with np.linspace(0, lr, warmup_iters), which reaches lr on the last warm-up
    iteration (lr·i/(warmup_iters − 1) rather than lr·i/warmup_iters) and decays to args.min_lr, not 0.
    step and constant: the same warm-up, then ×0.1 at each milestone (in epochs) or lr.
    """
    if warmup_epochs and epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))
    if schedule == "step":
        return base_lr * 0.1 ** sum(epoch >= m for m in milestones)
    return base_lr


def cosine_between(start: float, end: float, fraction: float) -> float:
    """end + ½(start − end)(1 + cos(π·fraction)): `start` at fraction 0, going to `end` at fraction 1.

    facebookresearch/dino utils.py `cosine_scheduler(base_value, final_value, …)` without warm-up, at
    iteration it of N (fraction = it / N); main_dino.py takes the weight decay from 0.04 to 0.4 this way.
    """
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * fraction))
