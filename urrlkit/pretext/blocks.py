"""Stateful building blocks of the contrastive methods, each a small nn.Module of plain values: MoCo's queue of
negatives and its shuffle-BN key pass (facebookresearch/moco builder.py), the NCE normaliser Z of InstDis and PIRL
(zhirongw/lemniscate.pytorch NCEAverage), and a module that only holds a random stream (so checkpoints save it).
The losses they feed are pure functions in losses.py."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from accelerate.utils import broadcast, gather
from torch import nn

from urrlkit.pretext.common import distributed, rank_world
from urrlkit.pretext.losses import bank_infonce, nce_loss, nce_normaliser


class Queue(nn.Module):
    """MoCo's queue of K negative keys, (dim, K) columns L2-normalised, filled one global batch per step."""

    queue: torch.Tensor  # buffers (register_buffer), declared for the type checker
    queue_ptr: torch.Tensor

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.k = size
        # Drawn from the global generator, as builder.py's torch.randn (after the heads are built).
        self.register_buffer("queue", F.normalize(torch.randn(dim, size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    def negatives(self) -> torch.Tensor:
        """The current keys as float32 (D, K), detached: the l_neg side of paper Eq. 1."""
        return self.queue.clone().detach().float()

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest columns with this step's keys, gathered from every process (builder.py
        _dequeue_and_enqueue, which asserts that K is a multiple of the global batch)."""
        keys = gather(keys.contiguous()) if distributed() else keys
        n = keys.shape[0]
        if self.k % n:
            raise ValueError(f"queue size {self.k} must be a multiple of the global batch {n}")
        # The pointer stays on the device: reading it back (int(...)) would stall a GPU every step.
        cols = (self.queue_ptr + torch.arange(n, device=self.queue_ptr.device)) % self.k
        self.queue.index_copy_(1, cols, keys.T.to(self.queue.dtype))
        self.queue_ptr.add_(n).remainder_(self.k)


class RandomStream(nn.Module):
    """A torch.Generator as a module attribute, so checkpoints save and restore it (engine/checkpoint.py
    module_generators) and a resumed run draws what an uninterrupted one would."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.gen = torch.Generator().manual_seed(seed)


@torch.no_grad()
def shuffled_keys(net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, groups: int,
                  gen: torch.Generator) -> torch.Tensor:
    """Key embeddings with shuffle-BN (MoCo §3.3), as the reference's _batch_shuffle_ddp / _batch_unshuffle_ddp:
    the global batch is permuted, cut into one chunk per process (and `groups` BN groups per chunk inside
    `net`), and the keys are put back in the original order, so no BN group holds the images of its own queries.
    The permutation comes from `gen`, seeded from run.seed alone and so identical on every rank."""
    rank, world = rank_world()
    if world > 1:
        x_all = gather(x.contiguous())
        perm = torch.randperm(x_all.shape[0], generator=gen).to(x.device)
        perm = broadcast(perm, from_process=0)
        mine = perm.view(world, -1)[rank]
        k = net(x_all[mine])
        k_all = gather(k.contiguous())
        unshuffled = k_all[torch.argsort(perm)]
        return F.normalize(unshuffled.view(world, -1, k.shape[1])[rank], dim=1)
    if groups > 1:
        perm = torch.randperm(x.shape[0], generator=gen).to(x.device)
        return F.normalize(net(x[perm])[torch.argsort(perm)], dim=1)
    return F.normalize(net(x), dim=1)


class NCENormaliser(nn.Module):
    """Z of the NCE, estimated once, from the first batch, then fixed (lemniscate's NCEAverage). A buffer, so
    checkpoints keep it; whether it is set is read back from the device once per process, not every step."""

    z: torch.Tensor  # a buffer (register_buffer), declared for the type checker

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("z", torch.zeros(()))
        self.known = False

    def forward(self, scores: torch.Tensor, temperature: float, n_data: int) -> torch.Tensor:
        if not self.known:
            if float(self.z) == 0.0:
                estimate = torch.tensor(nce_normaliser(scores, temperature, n_data), device=self.z.device)
                if distributed():  # one Z for all processes, as VISSL averages the per-rank means
                    dist.all_reduce(estimate)
                    estimate /= dist.get_world_size()
                self.z.fill_(float(estimate))
            self.known = True
        return self.z


def bank_objective(scores: torch.Tensor, normaliser: NCENormaliser, loss: str, temperature: float,
                   n_data: int) -> torch.Tensor:
    """NCE (Z from `normaliser`) or its softmax form, from (B, 1 + K) memory-bank scores."""
    if loss == "infonce":
        return bank_infonce(scores, temperature)
    return nce_loss(scores, temperature, normaliser(scores, temperature, n_data), n_data)
