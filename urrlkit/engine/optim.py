"""Optimizers named in recipes (SGD, AdamW, LARS), their parameter groups and gradient clipping."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from accelerate import Accelerator

OPTIMIZERS = ("sgd", "adamw", "lars")


def as_groups(model: nn.Module, params: Iterable[Any] | None) -> list[dict[str, Any]]:
    """`params` as a list of parameter-group dicts (each a copy, so the caller's stay as they were): the
    model's trainable parameters when None, one group for a plain list of tensors, else the caller's groups
    with every key they carry ("weight_decay", "lr_scale", …)."""
    if params is None:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]
    items = list(params)
    if items and all(isinstance(g, dict) for g in items):
        return [{**g, "params": list(g["params"])} for g in items]
    return [{"params": items}]


def split_norm_bias(groups: Iterable[dict[str, Any]], weight_decay: float, lars: bool = False
                    ) -> list[dict[str, Any]]:
    """Each group that decays (its own "weight_decay", else `weight_decay`, nonzero) split in two: its
    parameters with ndim > 1 as they were, and those with ndim ≤ 1 (biases, BatchNorm / LayerNorm weights) in
    a copy of the group with "weight_decay" 0 and, for LARS, "always_adapt" False (no trust ratio). With
    `lars` every group is split, since the adaptation applies whatever the decay. Other keys ("lr_scale")
    stay on both halves; an empty half is dropped.

    facebookresearch/dino utils.py `get_params_groups` (names ending in .bias or ndim 1: no decay),
    facebookresearch/moco-v3 moco/optimizer.py `LARS` (p.ndim == 1: neither decay nor adaptation),
    google-research/simclr lars_optimizer.py (`exclude_from_weight_decay` = ['batch_normalization', 'bias'],
    `exclude_from_layer_adaptation` defaulting to the same list)."""
    out = []
    for group in groups:
        if not lars and group.get("weight_decay", weight_decay) == 0:
            out.append(group)
            continue
        kept = {**group, "params": [p for p in group["params"] if p.ndim > 1]}
        flat = {**group, "params": [p for p in group["params"] if p.ndim <= 1], "weight_decay": 0.0}
        if lars:
            flat["always_adapt"] = False
        out += [g for g in (kept, flat) if g["params"]]
    return out


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float,
                    params: Iterable[Any] | None = None, *, exclude_norm_bias: bool = False,
                    betas: tuple[float, float] = (0.9, 0.999), trust: float = 0.001) -> torch.optim.Optimizer:
    """The optimizer `name` over `params` (the model's trainable parameters when None; tensors or group dicts,
    whose keys are kept): sgd (torch SGD with momentum), adamw (torch AdamW with `betas`; momentum unused) or
    lars (timm's `Lars`, SGD momentum with the trust ratio `trust`·‖w‖ / (‖g‖ + wd·‖w‖)). With
    `exclude_norm_bias` the ndim ≤ 1 parameters get no weight decay and no LARS adaptation (split_norm_bias).

    LARS adapts every group, also one whose weight decay is 0 (timm's always_adapt=True, as moco-v3 and
    SimCLR adapt regardless of the decay), except the norm/bias halves split_norm_bias marks, or a caller's
    group carrying "always_adapt": False. Deviations from the reference LARS (named, not reproduced): the
    denominator is ‖g‖ + wd·‖w‖ + 1e-8 (timm, after You et al. 2017 and NVIDIA apex LARC), where moco-v3 and
    SimCLR divide by ‖g + wd·w‖; the lr multiplies the momentum buffer (timm and moco-v3: p -= lr·buf), where
    SimCLR's classic momentum folds lr into the buffer, which differs only while the lr changes."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")
    groups = as_groups(model, params)
    if exclude_norm_bias:
        groups = split_norm_bias(groups, weight_decay, lars=name == "lars")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)
    from timm.optim.lars import Lars  # importing timm takes seconds; only LARS runs need it

    return Lars(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coeff=trust, always_adapt=True)


def clip_per_param(params: Iterable[nn.Parameter], max_norm: float) -> None:
    """Scale each gradient whose own L2 norm exceeds `max_norm` down to it: facebookresearch/dino utils.py
    `clip_gradients` (coefficient max_norm / (‖g‖ + 1e-6), applied when below 1), which is torch's
    `clip_grad_norm_` on one parameter at a time (the same coefficient and epsilon, without a host sync)."""
    for p in params:
        if p.grad is not None:
            torch.nn.utils.clip_grad_norm_(p, max_norm)


def clip_gradients(acc: Accelerator, model: nn.Module, max_norm: float, mode: str) -> None:
    """Clip the model's gradients before the optimizer step: "global", one norm over all of them (Accelerate's
    `clip_grad_norm_`, which unscales fp16 gradients and knows FSDP / DeepSpeed), or "per_param" (DINO's,
    clip_per_param, on gradients unscaled first as main_dino.py does with fp16_scaler.unscale_)."""
    if mode == "global":
        acc.clip_grad_norm_(model.parameters(), max_norm)
    elif mode == "per_param":
        acc.unscale_gradients()
        clip_per_param(model.parameters(), max_norm)
    else:
        raise ValueError(f"clip_grad_mode {mode!r}: expected global or per_param")
