"""MoCo v2 (He et al. 2020; Chen et al. 2020): query / momentum-key encoders, MLP head, queue of negatives,
shuffle-BN, InfoNCE (paper Eq. 1). The augmentation family of each view is the sampler's business, so MoCo v2,
AugMix, AugMix (AllOp), AugMix (MoCo) and URRL are this same module fed different views."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from accelerate.utils import broadcast, gather
from torch import nn

from urrlkit.models import Encoder
from urrlkit.pretext.common import check_bn_groups, distributed, head, rank_world, resolve_bn_groups, stream_seed
from urrlkit.pretext.losses import info_nce
from urrlkit.registry import PRETEXTS


def shuffle_warning(groups: int, processes: int) -> str | None:
    """The line to print when a MoCo run would have no shuffle-BN at all, else None."""
    if groups * processes > 1:
        return None
    return ("warning: MoCo without shuffle-BN (1 process, pretext.bn_groups = 1): the key encoder's BN statistics "
            "span the whole batch, the 'cheating' shuffle-BN exists to prevent (MoCo §3.3); set pretext.bn_groups "
            "= 'auto' to emulate the paper's 8 GPUs")


def grouped_forward(net: nn.Module, x: torch.Tensor, groups: int) -> torch.Tensor:
    """Forward in `groups` chunks so each chunk has its own BN statistics, as one device of a multi-GPU
    run would. With groups = 1 this is a plain forward."""
    if groups <= 1:
        return net(x)
    if x.shape[0] % groups:
        raise ValueError(f"batch {x.shape[0]} is not divisible by pretext.bn_groups = {groups}")
    return torch.cat([net(c) for c in x.chunk(groups)])


class MoCo(nn.Module):
    """MoCo v2. `forward(views, index)` returns (loss, stats); views[0] is the query, views[1] the key.

    Plain values, defaults those of facebookresearch/moco main_moco.py with --mlp --moco-t 0.2: `dim` the
    embedding size, `hidden_dim` the MLP head's hidden width (None = the encoder's feature size), `mlp` False for
    MoCo v1's linear head, `queue_size` K, `momentum` m, `temperature` τ, `bn_groups` shuffle-BN groups per
    process (an integer or "auto", see common.resolve_bn_groups). `seed` (run.seed) seeds the shuffle-BN
    permutations; `processes` (default: the current process group) resolves bn_groups = "auto";
    `batch_per_process`, when given, is checked against the groups up front. `num_samples` (the data set size)
    is unused: MoCo needs no memory bank."""

    queue: torch.Tensor  # buffers (register_buffer), declared for the type checker
    queue_ptr: torch.Tensor

    def __init__(self, encoder: Encoder, *, dim: int = 128, hidden_dim: int | None = None, mlp: bool = True,
                 queue_size: int = 65536, momentum: float = 0.999, temperature: float = 0.2,
                 bn_groups: int | str = 1, num_samples: int = 0, seed: int = 0, processes: int | None = None,
                 batch_per_process: int | None = None) -> None:
        super().__init__()
        self.encoder_q = encoder
        self.head_q = head(encoder.feature_dim, dim, hidden_dim, mlp)
        self.encoder_k = copy.deepcopy(encoder)
        self.head_k = copy.deepcopy(self.head_q)
        for p in (*self.encoder_k.parameters(), *self.head_k.parameters()):
            p.requires_grad_(False)
        self.m = momentum
        self.t = temperature
        self.k = queue_size
        processes = rank_world()[1] if processes is None else processes
        self.groups = resolve_bn_groups(bn_groups, processes)
        if batch_per_process is not None:
            check_bn_groups(self.groups, batch_per_process, bn_groups)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        # Shuffle permutations come from their own generator, seeded from run.seed alone and so identical on
        # every rank: single-process and multi-process runs draw the same permutation (see tests). It is a
        # torch.Generator attribute, so checkpoints save and restore it (engine/checkpoint.py module_generators).
        self.shuffle_gen = torch.Generator().manual_seed(stream_seed(seed, "moco-shuffle-bn"))

    @property
    def encoder(self) -> Encoder:
        return self.encoder_q

    def embed_q(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head_q(grouped_forward(self.encoder_q, x, self.groups)), dim=1)

    @torch.no_grad()
    def momentum_update(self) -> None:
        qs = [p.detach() for p in (*self.encoder_q.parameters(), *self.head_q.parameters())]
        ks = [p.detach() for p in (*self.encoder_k.parameters(), *self.head_k.parameters())]
        # One fused launch per op for all parameters instead of two per tensor (same arithmetic).
        torch._foreach_mul_(ks, self.m)
        torch._foreach_add_(ks, qs, alpha=1.0 - self.m)

    @torch.no_grad()
    def embed_k(self, x: torch.Tensor) -> torch.Tensor:
        """Key embeddings with shuffle-BN, as the reference's _batch_shuffle_ddp / _batch_unshuffle_ddp: the
        global batch is permuted, cut into one chunk per process and `groups` BN groups per chunk, and the keys
        are put back in the original order, so no BN group holds the images of its own queries."""
        net = lambda t: self.head_k(grouped_forward(self.encoder_k, t, self.groups))  # noqa: E731
        rank, world = rank_world()
        if world > 1:
            x_all = gather(x.contiguous())
            perm = torch.randperm(x_all.shape[0], generator=self.shuffle_gen).to(x.device)
            perm = broadcast(perm, from_process=0)
            mine = perm.view(world, -1)[rank]
            k = net(x_all[mine])
            k_all = gather(k.contiguous())
            unshuffled = k_all[torch.argsort(perm)]
            return F.normalize(unshuffled.view(world, -1, k.shape[1])[rank], dim=1)
        if self.groups > 1:
            perm = torch.randperm(x.shape[0], generator=self.shuffle_gen).to(x.device)
            return F.normalize(net(x[perm])[torch.argsort(perm)], dim=1)
        return F.normalize(net(x), dim=1)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        keys = gather(keys.contiguous()) if distributed() else keys
        n = keys.shape[0]
        if self.k % n:
            raise ValueError(f"queue size {self.k} must be a multiple of the global batch {n}")
        # The pointer stays on the device: reading it back (int(...)) would stall a GPU every step.
        cols = (self.queue_ptr + torch.arange(n, device=self.queue_ptr.device)) % self.k
        self.queue.index_copy_(1, cols, keys.T.to(self.queue.dtype))
        self.queue_ptr.add_(n).remainder_(self.k)

    def forward(self, views: list[torch.Tensor], index: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, float]]:
        q = self.embed_q(views[0])
        with torch.no_grad():
            self.momentum_update()
            k = self.embed_k(views[1])
        loss = info_nce(q.float(), k.float(), self.queue.clone().detach().float(), self.t)
        self.enqueue(k)
        return loss, {}


PRETEXTS.add("moco_v2", MoCo)
