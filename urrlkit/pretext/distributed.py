"""A gather of every process's embeddings that carries the gradients back to their owners: SimCLR's negatives from
the whole global batch (google-research/simclr objective.py hidden1_large / hidden2_large)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from urrlkit.pretext.common import rank_world


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for this process's rows (an all_reduce, then this
    process's slice): the gradient of google-research/simclr's tpu_cross_replica_concat, an all-reduce SUM of a
    zero-padded tensor. The same as torch.distributed.nn.functional.all_gather (deprecated) and solo-learn's
    GatherLayer; all_reduce runs on gloo as well as NCCL."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        rank, world = rank_world()
        ctx.rank, ctx.rows = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> torch.Tensor:
        g = grads[0].contiguous()
        dist.all_reduce(g)
        return g[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(W·N, …) rows of every process in rank order, differentiable (see _GatherWithGrad); x itself with one
    process. Every process must hold the same number of rows (the loader drops the last partial batch)."""
    if rank_world()[1] == 1:
        return x
    out: torch.Tensor = _GatherWithGrad.apply(x)
    return out
