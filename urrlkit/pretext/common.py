"""Pieces the pretexts share: the projection head, a memory bank, and the process topology."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from accelerate.utils import gather
from torch import nn

from urrlkit.recipe import PretextConfig


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distributed() -> bool:
    return rank_world()[1] > 1


def head(in_dim: int, cfg: PretextConfig) -> nn.Module:
    """MoCo v2's MLP head Linear(d, h) → ReLU → Linear(h, dim) (`--mlp`), or a single Linear (v1)."""
    if not cfg.mlp:
        return nn.Linear(in_dim, cfg.head_dim)
    hidden = cfg.head_hidden or in_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, cfg.head_dim))


class MemoryBank(nn.Module):
    """One L2-normalised embedding per training image, updated by momentum (InstDis, PIRL)."""

    def __init__(self, n: int, dim: int, momentum: float, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        # InstDis initialises uniformly in [−1/√(dim/3), 1/√(dim/3)]; normalised here so dot products are cosines.
        bank = (torch.rand(n, dim, generator=g) * 2 - 1) / (dim / 3) ** 0.5
        self.register_buffer("bank", F.normalize(bank, dim=1))
        self.momentum = momentum
        self.gen = torch.Generator().manual_seed(seed + 1)

    def sample(self, batch: int, k: int, device: torch.device) -> torch.Tensor:
        """(batch, k, dim) uniformly drawn entries (the noise distribution P_n = 1/n)."""
        idx = torch.randint(0, self.bank.shape[0], (batch, k), generator=self.gen).to(device)
        return self.bank[idx]

    @torch.no_grad()
    def update(self, index: torch.Tensor, feat: torch.Tensor) -> None:
        if distributed():
            index, feat = gather(index.contiguous()), gather(feat.contiguous())
        mixed = self.bank[index] * self.momentum + feat.detach().to(self.bank.dtype) * (1 - self.momentum)
        self.bank[index] = F.normalize(mixed, dim=1)
