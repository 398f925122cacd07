"""Parameters held fixed for a while by dropping their gradients right before each optimizer step: DINO's
freeze_last_layer (facebookresearch/dino utils.py cancel_gradients_last_layer, called in main_dino.py between the
gradient clipping and optimizer.step()).

The method's forward runs before the loop's backward, clipping and step (engine/loop.py train_step), so it cannot
drop gradients itself; a gradient hook could only zero them, and a zero gradient is not the reference's absent one:
AdamW would still decay the weights and count the step (its bias correction and moments then differ once the layer
is released), LARS would still apply weight decay. `StepFreeze` instead registers a global optimizer step
pre-hook (torch.optim.optimizer.register_optimizer_step_pre_hook) that sets `grad = None` on its parameters while
`active`, after DDP's all-reduce and the clipping, so every optimizer skips them exactly as in the reference,
whatever the launch (one process, DDP, fp16 GradScaler, gradient accumulation: the hook runs on the step that
applies). The method sets `active` from the step's Progress in its forward.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

import torch
import torch.optim.optimizer as torch_optimizer
from torch import nn


class StepFreeze(nn.Module):
    """Drops the gradients of `params` before every optimizer step of the process while `active` is true.

    A part without parameters or state (checkpoints hold nothing of it: `active` is set again by every forward
    from the resumed Progress). The parameters are kept in a plain list, not registered as its own, and the hook
    holds only a weak reference to this module; it is removed when the module is garbage-collected."""

    def __init__(self, params: Iterable[nn.Parameter]) -> None:
        super().__init__()
        self.targets: list[nn.Parameter] = list(params)
        self.active = False
        me = weakref.ref(self)

        def drop_grads(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            module = me()
            if module is not None and module.active:
                for p in module.targets:
                    p.grad = None

        handle = torch_optimizer.register_optimizer_step_pre_hook(drop_grads)
        weakref.finalize(self, handle.remove)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # a holder, never called
        raise TypeError("StepFreeze holds a gradient freeze; it has no forward")

    def extra_repr(self) -> str:
        return f"{len(self.targets)} parameters, active={self.active}"
