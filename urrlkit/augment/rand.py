"""Per-sample random draws from one `torch.Generator`, on the generator's device.

Every draw goes through the caller's generator so that a run is reproducible from a seed (per process and
device) and no global RNG state is touched.
"""

from __future__ import annotations

import torch
from torch import Tensor


def uniform(n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
    """n draws from U(lo, hi) (float32)."""
    return torch.rand(n, generator=g, device=g.device).mul_(hi - lo).add_(lo)


def bernoulli(n: int, p: float, g: torch.Generator) -> Tensor:
    """n Bernoulli(p) draws as a bool tensor."""
    return torch.rand(n, generator=g, device=g.device) < p


def randint(n: int, low: int, high: int, g: torch.Generator) -> Tensor:
    """n integers uniform in [low, high) (int64)."""
    return torch.randint(low, high, (n,), generator=g, device=g.device)


def sign(n: int, g: torch.Generator) -> Tensor:
    """n random signs ±1 (float32), as the AugMix geometric ops draw them."""
    return torch.where(bernoulli(n, 0.5, g), 1.0, -1.0)


def dirichlet_ones(n: int, k: int, g: torch.Generator) -> Tensor:
    """n draws from Dirichlet(1, …, 1) of dimension k: normalised Exp(1) variables (exact)."""
    e = -torch.log1p(-torch.rand(n, k, generator=g, device=g.device).clamp_(max=1 - 1e-7))
    return e / e.sum(dim=1, keepdim=True).clamp_min(1e-12)
