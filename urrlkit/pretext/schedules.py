"""Momentum, temperature and cosine schedules of BYOL, MoCo v3 and DINO as pure functions of plain numbers
(no torch): the value at one step, computed with the reference's own arithmetic so it matches it to rounding."""

from __future__ import annotations

import math


def _check_fraction(fraction: float, name: str) -> None:
    if fraction < 0:
        raise ValueError(f"{name}: the training fraction must be >= 0, got {fraction}")


def cosine_value(start: float, end: float, fraction: float) -> float:
    """Half-cycle cosine from `start` (fraction 0) to `end` (fraction 1): end + ½(start − end)(1 + cos(π·fraction)),
    the interpolation of facebookresearch/dino utils.py cosine_scheduler (its lr, weight decay 0.04 → 0.4 and
    teacher momentum schedules)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * fraction))


def dino_cosine_schedule(base: float, final: float, step: int, steps: int, warmup_steps: int = 0,
                         start_warmup: float = 0.0) -> float:
    """Entry `step` of facebookresearch/dino utils.py cosine_scheduler(base, final, epochs, niter_per_ep,
    warmup_epochs, start_warmup_value), with steps = epochs·niter_per_ep and warmup_steps = warmup_epochs·niter_per_ep:
    np.linspace(start_warmup, base, warmup_steps) first, then cosine_value(base, final, i / (steps − warmup_steps))
    at i = step − warmup_steps. As in the reference the last step stops one step short of `final`."""
    if not 0 <= step < steps or not 0 <= warmup_steps <= steps:
        raise ValueError(f"dino_cosine_schedule: need 0 <= step < steps and 0 <= warmup_steps <= steps, got step "
                         f"{step}, steps {steps}, warmup_steps {warmup_steps}")
    if step < warmup_steps:
        return _linspace_entry(start_warmup, base, warmup_steps, step)
    return cosine_value(base, final, (step - warmup_steps) / (steps - warmup_steps))


def _linspace_entry(start: float, stop: float, num: int, i: int) -> float:
    """np.linspace(start, stop, num)[i] (endpoint included; num = 1 gives [start])."""
    if num == 1:
        return start
    if i == num - 1:
        return stop
    return i * ((stop - start) / (num - 1)) + start


def byol_momentum(base: float, fraction: float) -> float:
    """BYOL's target decay (Grill et al. 2020, §3.2): τ = 1 − (1 − τ_base)·(cos(π k/K) + 1)/2, fraction = k/K;
    as deepmind-research byol/utils/schedules.py target_ema, which clamps k at K (τ = 1 from then on)."""
    _check_fraction(fraction, "byol_momentum")
    decay = 0.5 * (1 + math.cos(math.pi * min(fraction, 1.0)))
    return 1.0 - (1.0 - base) * decay


def moco_v3_momentum(base: float, epoch: float, epochs: int) -> float:
    """facebookresearch/moco-v3 main_moco.py adjust_moco_momentum (--moco-m-cos):
    m = 1 − ½(1 + cos(π·epoch/epochs))·(1 − m₀), called every iteration with the fractional epoch
    epoch + i / iters_per_epoch."""
    _check_fraction(epoch, "moco_v3_momentum")
    return 1.0 - 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)) * (1.0 - base)


def dino_momentum(base: float, step: int, steps: int) -> float:
    """DINO's teacher momentum at iteration `step` of `steps` (epochs · iterations per epoch):
    facebookresearch/dino main_dino.py momentum_schedule = cosine_scheduler(momentum_teacher, 1, epochs,
    len(data_loader)), i.e. 1 + ½(base − 1)(1 + cos(π·step/steps)); it never quite reaches 1."""
    return dino_cosine_schedule(base, 1.0, step, steps)


def dino_teacher_temp(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """DINO's teacher temperature at `epoch` (per epoch, as facebookresearch/dino main_dino.py DINOLoss's
    teacher_temp_schedule): np.linspace(warmup_temp, temp, warmup_epochs) over the first warmup_epochs epochs
    (reaching `temp` at epoch warmup_epochs − 1), then `temp`."""
    if epoch < 0 or warmup_epochs < 0:
        raise ValueError(f"dino_teacher_temp: epoch and warmup_epochs must be >= 0, got {epoch}, {warmup_epochs}")
    if epoch < warmup_epochs:
        return _linspace_entry(warmup_temp, temp, warmup_epochs, epoch)
    return temp
