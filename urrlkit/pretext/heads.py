"""Projection and prediction heads of SimCLR, BYOL, MoCo v3 and DINO, built from plain values.

Every initialisation draws from the global torch RNG only (module construction, then the reference's own
re-initialisation), so a caller who seeds it (torch.manual_seed) gets the same weights on every run.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

# What follows the last Linear of an MLP head: nothing, BN with γ and β, BN with γ only (TF's center=False,
# SimCLR), or BN with neither (affine=False, MoCo v3).
LastBN = Literal["none", "affine", "scale", "plain"]
# The references' Linear initialisations: PyTorch's default (MoCo v3; DINO's last layer), SimCLR's
# RandomNormal(stddev=0.01) kernels with zero biases, haiku's default (BYOL): TruncatedNormal(1/√fan_in) at ±2σ.
WeightInit = Literal["torch", "simclr", "haiku"]


class ScaleBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d with a learned scale γ and no shift β: TF's batch_normalization(center=False, scale=True),
    the last BN of google-research/simclr's projection head. State dict: weight, running_mean, running_var,
    num_batches_tracked (no bias)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, affine=True)
        self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        nn.init.ones_(self.weight)


def _last_norm(mode: LastBN, dim: int) -> list[nn.Module]:
    if mode == "none":
        return []
    if mode == "affine":
        return [nn.BatchNorm1d(dim)]
    if mode == "scale":
        return [ScaleBatchNorm1d(dim)]
    if mode == "plain":
        return [nn.BatchNorm1d(dim, affine=False)]
    raise ValueError(f"last_bn must be one of none, affine, scale, plain; got {mode!r}")


@torch.no_grad()
def _init_linear(layer: nn.Linear, how: WeightInit) -> None:
    if how == "torch":
        return
    if how == "simclr":
        nn.init.normal_(layer.weight, std=0.01)
    elif how == "haiku":
        std = 1.0 / math.sqrt(layer.in_features)
        nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    else:
        raise ValueError(f"weight_init must be one of torch, simclr, haiku; got {how!r}")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, *, batch_norm: bool = True,
             hidden_bias: bool = True, last_bias: bool = True, last_bn: LastBN = "none",
             weight_init: WeightInit = "torch") -> nn.Sequential:
    """An MLP of `num_layers` Linear layers in_dim → hidden_dim → … → out_dim: every Linear but the last is
    followed by BatchNorm1d (γ, β; when batch_norm) and ReLU; the last by `last_bn`. hidden_bias / last_bias:
    the Linear biases. BN keeps PyTorch's eps 1e-5 and momentum 0.1, the references' (TF / haiku decay 0.9).
    num_layers = 1 is one Linear(in_dim, out_dim) and its last_bn."""
    if num_layers < 1:
        raise ValueError(f"mlp_head: num_layers must be >= 1, got {num_layers}")
    layers: list[nn.Module] = []
    for i in range(num_layers):
        last = i == num_layers - 1
        d_in = in_dim if i == 0 else hidden_dim
        d_out = out_dim if last else hidden_dim
        linear = nn.Linear(d_in, d_out, bias=last_bias if last else hidden_bias)
        _init_linear(linear, weight_init)
        layers.append(linear)
        if last:
            layers += _last_norm(last_bn, d_out)
        else:
            layers += [nn.BatchNorm1d(d_out)] if batch_norm else []
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simclr_projection_head(in_dim: int, out_dim: int = 128, num_layers: int = 3) -> nn.Sequential:
    """SimCLR's projection head as google-research/simclr (v2 code, model_util.py projection_head,
    proj_head_mode 'nonlinear', num_proj_layers 3, proj_out_dim 128): num_layers Linear layers without bias, the
    hidden ones in_dim wide; each hidden one followed by BN(γ, β) and ReLU, the last by BN(γ only); kernels
    N(0, 0.01). num_layers = 2 is the v2 code with num_proj_layers = 2 (the v1 paper's depth)."""
    return mlp_head(in_dim, in_dim, out_dim, num_layers, hidden_bias=False, last_bias=False, last_bn="scale",
                    weight_init="simclr")


def byol_mlp(in_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> nn.Sequential:
    """BYOL's projector and predictor (Grill et al. 2020, §3.3; deepmind-research byol/utils/networks.py MLP):
    Linear(in_dim, 4096, bias) → BN(γ, β) → ReLU → Linear(4096, 256, no bias), haiku's default initialisation.
    The projector takes the encoder's features, the predictor the 256-d projection.
    (lucidrains/byol-pytorch gives the last Linear a bias; the official code does not.)"""
    return mlp_head(in_dim, hidden_dim, out_dim, 2, hidden_bias=True, last_bias=False, weight_init="haiku")


def moco_v3_mlp(num_layers: int, in_dim: int, mlp_dim: int, out_dim: int, last_bn: bool = True) -> nn.Sequential:
    """facebookresearch/moco-v3 moco/builder.py MoCo._build_mlp: Linear layers without bias, BN(γ, β) + ReLU
    after all but the last, and after the last BN(affine=False) when last_bn; PyTorch's default init."""
    return mlp_head(in_dim, mlp_dim, out_dim, num_layers, hidden_bias=False, last_bias=False,
                    last_bn="plain" if last_bn else "none")


def moco_v3_heads(in_dim: int, *, vit: bool, dim: int = 256, mlp_dim: int = 4096) -> tuple[nn.Sequential,
                                                                                         nn.Sequential]:
    """(projector, predictor) of facebookresearch/moco-v3 (--moco-dim 256, --moco-mlp-dim 4096):
    MoCo_ResNet: projector _build_mlp(2, in_dim, 4096, 256), predictor _build_mlp(2, 256, 4096, 256,
    last_bn=False); MoCo_ViT: projector _build_mlp(3, …), predictor _build_mlp(2, …) with its last BN.
    The momentum encoder gets a copy of the projector (ema.momentum_copy), the predictor none."""
    projector = moco_v3_mlp(3 if vit else 2, in_dim, mlp_dim, dim)
    predictor = moco_v3_mlp(2, dim, mlp_dim, dim, last_bn=vit)
    return projector, predictor


class DINOHead(nn.Module):
    """facebookresearch/dino vision_transformer.py DINOHead: an MLP in_dim → hidden_dim (→ hidden_dim …) →
    bottleneck_dim with GELU (and BN when use_bn) over num_layers Linear layers (1: a single Linear), weights
    trunc_normal(std 0.02), biases 0; the bottleneck L2-normalised; then a weight-normalised Linear(bottleneck_dim,
    out_dim, no bias) whose V keeps PyTorch's default init and whose g is set to 1, and frozen when
    norm_last_layer (so the last layer is x ↦ x·(V/‖V_row‖)ᵀ).

    Deviation: torch.nn.utils.parametrizations.weight_norm replaces the reference's deprecated
    nn.utils.weight_norm (same g·V/‖V‖ over dim 0); its parameters are last_layer.parametrizations.weight.original0
    (g, the reference's last_layer.weight_g) and .original1 (V, last_layer.weight_v), so an official checkpoint
    loads after renaming those two keys.
    """

    def __init__(self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 num_layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True) -> None:
        super().__init__()
        num_layers = max(num_layers, 1)
        self.mlp: nn.Module
        if num_layers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = []
            for i in range(num_layers - 1):
                layers.append(nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim))
                layers += [nn.BatchNorm1d(hidden_dim)] if use_bn else []
                layers.append(nn.GELU())
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        # Same draws, in the same order, as the reference's self.apply(self._init_weights) before last_layer.
        with torch.no_grad():
            for m in self.mlp.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        g = self.weight_g
        with torch.no_grad():
            g.fill_(1.0)
        if norm_last_layer:
            g.requires_grad_(False)

    @property
    def weight_g(self) -> nn.Parameter:
        """The last layer's weight-norm magnitude g, (out_dim, 1)."""
        return dict(self.last_layer.named_parameters())["parametrizations.weight.original0"]

    @property
    def weight_v(self) -> nn.Parameter:
        """The last layer's weight-norm direction V, (out_dim, bottleneck_dim)."""
        return dict(self.last_layer.named_parameters())["parametrizations.weight.original1"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        out: torch.Tensor = self.last_layer(x)
        return out


def cancel_last_layer_grads(module: nn.Module, epoch: int, freeze_last_layer: int) -> None:
    """facebookresearch/dino utils.py cancel_gradients_last_layer: during the first freeze_last_layer epochs
    drop the gradients (grad = None) of every parameter whose name contains 'last_layer', so the optimizer
    leaves the DINO head's output layer as initialised. Call between backward and the optimizer step."""
    if epoch >= freeze_last_layer:
        return
    for name, p in module.named_parameters():
        if "last_layer" in name:
            p.grad = None
