"""The momentum (EMA) target network of BYOL, MoCo v3 and DINO: a frozen copy and its in-place update."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn


@torch.no_grad()
def ema_update_(target: Iterable[torch.Tensor], online: Iterable[torch.Tensor], momentum: float) -> None:
    """target ← m·target + (1 − m)·online, in place, tensor by tensor in order.

    The update of BYOL (Grill et al. 2020, §3.1; deepmind-research byol_experiment.py, written there as
    x + (1 − τ)(y − x)), MoCo v3 (facebookresearch/moco-v3 builder.py _update_momentum_encoder) and DINO
    (facebookresearch/dino main_dino.py, param_k.mul_(m).add_((1 − m)·param_q)); the same arithmetic as
    urrlkit/pretext/methods/moco_v2.py. The references pass parameters only: BN running statistics
    of the target are its own (its forward updates them), so pass `.parameters()`, not the state dict.
    """
    ts = [t.detach() for t in target]
    os_ = [o.detach() for o in online]
    if len(ts) != len(os_):
        raise ValueError(f"ema_update_: {len(ts)} target tensors but {len(os_)} online tensors")
    if not ts:
        return
    # One fused launch per op for all tensors instead of two per tensor.
    torch._foreach_mul_(ts, momentum)
    torch._foreach_add_(ts, os_, alpha=1.0 - momentum)


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` whose parameters take no gradient: the initial target / momentum / teacher
    network, equal to the online one (BYOL, MoCo v3 and DINO all start from the online weights). Its train /
    eval mode is the module's own: the references run the target's BN with batch statistics."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target
