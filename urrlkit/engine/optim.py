"""Optimizers named in recipes."""

from __future__ import annotations

import torch
from torch import nn


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float,
                    params: list | None = None) -> torch.optim.Optimizer:
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(name)
