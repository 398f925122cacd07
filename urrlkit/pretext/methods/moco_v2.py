"""MoCo v2 (He et al. 2020; Chen et al. 2020): query / momentum-key encoders, MLP head, queue of negatives,
shuffle-BN, InfoNCE (paper Eq. 1). The augmentation family of each view is the sampler's business, so MoCo v2,
AugMix, AugMix (AllOp), AugMix (MoCo) and URRL are this same method fed different views.

Defaults are facebookresearch/moco main_moco.py with --mlp --moco-t 0.2 (MoCo v2), the paper's setup."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from urrlkit.config.sections import _error_at
from urrlkit.pretext.methods.grouped_bn import GroupedBNSettings

if TYPE_CHECKING:
    from torch import Tensor, nn

    from urrlkit.engine.progress import Progress, StepOutput
    from urrlkit.models import Encoder
    from urrlkit.pretext.model import BuildContext, PretextModel


class MoCoV2(GroupedBNSettings):
    """MoCo v2: views[0] is the query, views[1] the key."""

    method: Literal["moco_v2"] = "moco_v2"
    queue_size: int = Field(65536, ge=1, le=2**24, description="K, negatives in the queue (main_moco.py --moco-k)")
    momentum: float = Field(0.999, ge=0, le=1, description="m of the key encoder (--moco-m)")
    temperature: float = Field(0.2, gt=0, description="τ of Eq. 1 (--moco-t; 0.2 for MoCo v2)")
    head_hidden: int | None = Field(None, ge=1, le=65536, description="MLP head hidden width; None = the "
                                    "encoder's feature size (builder.py)")
    head_dim: int = Field(128, ge=1, le=65536, description="embedding size (--moco-dim)")
    mlp: bool = Field(True, description="MoCo v2's 2-layer MLP head (--mlp); false = MoCo v1's linear head")

    summary = "MoCo v2 (InfoNCE with a momentum key encoder and a queue)"

    def check(self, batch_size: int, image_size: int) -> None:
        # builder.py _dequeue_and_enqueue asserts `self.K % batch_size == 0` on the keys gathered from every
        # process. data.batch_size is that global batch (gradient accumulation repeats it; it does not split it).
        if self.queue_size % batch_size:
            raise _error_at("pretext.queue_size", f"{self.queue_size} is not a multiple of data.batch_size = "
                            f"{batch_size} (MoCo enqueues a whole global batch of keys per step)")
        super().check(batch_size, image_size)

    def chance_loss(self, batch_size: int) -> float | None:
        return math.log(self.queue_size + 1)  # one positive among K + 1 candidates

    def build(self, encoder: Encoder, ctx: BuildContext) -> dict[str, nn.Module]:
        from urrlkit.pretext.blocks import Queue, RandomStream
        from urrlkit.pretext.common import head, stream_seed
        from urrlkit.pretext.ema import momentum_copy

        self.groups(ctx)  # checked against the per-process batch before anything is built
        head_q = head(encoder.feature_dim, self.head_dim, self.head_hidden, self.mlp)
        # In builder.py's order: the query head, the key copies, then the queue (drawn from the same generator).
        return {"head_q": head_q, "encoder_k": momentum_copy(encoder), "head_k": momentum_copy(head_q),
                "queue": Queue(self.head_dim, self.queue_size),
                # Its own stream, from run.seed alone: single- and multi-process runs draw the same permutation.
                "shuffle": RandomStream(stream_seed(ctx.seed, "moco-shuffle-bn"))}

    def forward(self, model: PretextModel, views: list[Tensor], index: Tensor, progress: Progress) -> StepOutput:
        import torch
        import torch.nn.functional as F

        from urrlkit.engine.progress import StepOutput
        from urrlkit.pretext.blocks import Queue, RandomStream, shuffled_keys
        from urrlkit.pretext.common import grouped_forward
        from urrlkit.pretext.ema import ema_update_
        from urrlkit.pretext.losses import info_nce

        p, groups = model.parts, self.groups(model.ctx)
        feats = grouped_forward(model.encoder, views[0], groups)
        q = F.normalize(p["head_q"](feats), dim=1)
        with torch.no_grad():
            # main_moco.py updates the key encoder before computing this step's keys.
            ema_update_([*p["encoder_k"].parameters(), *p["head_k"].parameters()],
                        [*model.encoder.parameters(), *p["head_q"].parameters()], self.momentum)
            k = shuffled_keys(lambda t: p["head_k"](grouped_forward(p["encoder_k"], t, groups)), views[1], groups,
                              model.part("shuffle", RandomStream).gen)
        queue = model.part("queue", Queue)
        loss = info_nce(q.float(), k.float(), queue.negatives(), self.temperature)
        queue.enqueue(k)
        return StepOutput(loss, features=feats, embeddings=(q.detach(), k))

    def warnings(self, model: PretextModel, ctx: BuildContext) -> list[str]:
        if self.groups(ctx) * ctx.processes > 1:
            return []
        return ["warning: MoCo without shuffle-BN (1 process, pretext.bn_groups = 1): the key encoder's BN statistics "
                "span the whole batch, the 'cheating' shuffle-BN exists to prevent (MoCo §3.3); set pretext.bn_groups "
                "= 'auto' to emulate the paper's 8 GPUs"]
