"""Pieces the pretexts share: the projection head, a memory bank, the process topology, seeds of random streams
and BN groups (MoCo's shuffle-BN, and every method that emulates the paper's 8 devices)."""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist
import torch.nn.functional as F
from accelerate.utils import gather
from torch import nn

from urrlkit.errors import RecipeError

PAPER_DEVICES = 8  # MoCo v2 / URRL train on 8 GPUs, each with its own BN statistics over 256 / 8 images


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distributed() -> bool:
    return rank_world()[1] > 1


def stream_seed(seed: int, stream: str) -> int:
    """A seed for the named random stream of a run, derived from run.seed: different streams seeded from one
    run.seed (e.g. shuffle-BN vs augmentations, which use run.seed · 1000 + rank) never draw the same numbers."""
    return int.from_bytes(hashlib.sha256(f"{stream}:{seed}".encode()).digest()[:8], "little") >> 1


def resolve_bn_groups(bn_groups: int | str, processes: int) -> int:
    """pretext.bn_groups as BN groups per process: "auto" splits the paper's 8 devices over the processes
    (1 → 8, 2 → 4, 4 → 2, 8 or more → 1, each process then being at least one device)."""
    if bn_groups != "auto":
        return int(bn_groups)
    if processes >= PAPER_DEVICES:
        return 1
    if PAPER_DEVICES % processes:
        raise RecipeError(f"pretext.bn_groups = 'auto' splits the paper's {PAPER_DEVICES} shuffle-BN devices over "
                          f"the processes, which {processes} processes cannot do evenly; set an integer")
    return PAPER_DEVICES // processes


def check_bn_groups(groups: int, batch_per_process: int, bn_groups: int | str) -> None:
    """One line naming the field when the per-process batch does not split into `groups` BN groups."""
    if batch_per_process % groups:
        how = f"'auto' → {groups} per process" if bn_groups == "auto" else str(groups)
        raise RecipeError(f"pretext.bn_groups = {how} does not divide the per-process batch of {batch_per_process} "
                          "images (data.batch_size / processes); change one of them")


def grouped_forward(net: nn.Module, x: torch.Tensor, groups: int) -> torch.Tensor:
    """Forward in `groups` chunks so each chunk has its own BN statistics, as one device of a multi-GPU
    run would. With groups = 1 this is a plain forward."""
    if groups <= 1:
        return net(x)
    if x.shape[0] % groups:
        raise ValueError(f"batch {x.shape[0]} is not divisible by pretext.bn_groups = {groups}")
    return torch.cat([net(c) for c in x.chunk(groups)])


def head(in_dim: int, dim: int = 128, hidden_dim: int | None = None, mlp: bool = True) -> nn.Module:
    """MoCo v2's MLP head Linear(in_dim, hidden) → ReLU → Linear(hidden, dim) (`--mlp`; hidden = in_dim unless
    given, as facebookresearch/moco builder.py), or a single Linear(in_dim, dim) (MoCo v1, InstDis)."""
    if not mlp:
        return nn.Linear(in_dim, dim)
    hidden = hidden_dim or in_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))


class MemoryBank(nn.Module):
    """One L2-normalised embedding per training image, updated by momentum (InstDis, PIRL)."""

    bank: torch.Tensor  # a buffer (register_buffer), declared for the type checker

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
