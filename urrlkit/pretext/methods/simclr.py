"""SimCLR (Chen et al. 2020): two views of each image through the encoder and a BN projection head, and the
NT-Xent loss over the 2N views of the global batch: every view's positive is the other view of its image, its
negatives the 2N − 2 other views.

As google-research/simclr (v2 code: tf2/model.py, tf2/objective.py add_contrastive_loss, run.py flags):
- both views forward as ONE batch of 2N images (model.py concatenates the views before the ResNet), so the BN
  statistics of a process span both views;
- projection head model_util.py projection_head ('nonlinear', --num_proj_layers 3, --proj_out_dim 128): Linear
  layers without bias, BN + ReLU after the hidden ones, the last followed by BN with a scale and no shift,
  kernels N(0, 0.01) (pretext/heads.py simclr_projection_head);
- the embeddings L2-normalised (--hidden_norm), logits / τ (--temperature 0.1), each process's anchors scored
  against the views of every process (tpu_cross_replica_concat, differentiable: pretext/distributed.py
  gather_with_grad), self-similarities removed with LARGE_NUM (pretext/losses.py nt_xent);
- the loss as objective.py returns it, loss_a + loss_b (each a mean over N anchors) = 2 × the paper's mean over
  the 2N anchors (`loss_sum = true`; false: the paper's Algorithm 1 mean). run.py divides the per-replica loss by
  the replica count and sums the gradients; DDP's gradient mean is the same.
- augmentation: the `simclr` family (data_util.py; augment/families.py), drawn per view by paper Eq. 2.

Deviations, named: BN statistics are per process (run.py --global_bn True aggregates them over all cores; a
multi-process launch warns); the representation for the online probe and the health monitor is the encoder's
output and the head's output (the reference's linear-eval-while-pretraining head reads the same features).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from urrlkit.config.pretext import MethodSettings
from urrlkit.config.sections import _error_at

if TYPE_CHECKING:
    from torch import Tensor, nn

    from urrlkit.engine.progress import Progress, StepOutput
    from urrlkit.models import Encoder
    from urrlkit.pretext.model import BuildContext, PretextModel


class SimCLR(MethodSettings):
    """SimCLR: views[0] and views[1] are the two augmentations of each image."""

    method: Literal["simclr"] = "simclr"
    temperature: float = Field(0.1, gt=0, description="τ of NT-Xent (run.py --temperature; the README's "
                               "CIFAR-10 run: 0.5)")
    head_dim: int = Field(128, ge=1, le=65536, description="projection output size (--proj_out_dim)")
    head_layers: int = Field(3, ge=1, le=8, description="Linear layers of the projection head (--num_proj_layers; "
                             "the v1 paper's head has 2)")
    head_hidden: int | None = Field(None, ge=1, le=65536, description="hidden width of the head; None = the "
                                    "encoder's feature size (model_util.py projection_head)")
    loss_sum: bool = Field(True, description="loss_a + loss_b as objective.py (2× the paper's mean over the 2N "
                           "anchors); false: the mean")

    representation_family = "simclr"
    summary = "SimCLR (NT-Xent over the 2N views of the global batch, BN projection head)"

    def check(self, batch_size: int, image_size: int) -> None:
        if self.views != 2:
            raise _error_at("pretext.views", f"SimCLR contrasts exactly 2 views per image, got {self.views}")

    def chance_loss(self, batch_size: int) -> float | None:
        # An anchor's softmax runs over its positive and the 2N − 2 other views of the global batch (its own
        # similarity is removed): ln(2N − 1) per anchor, twice that for the reference's sum of the two halves.
        return (2 if self.loss_sum else 1) * math.log(2 * batch_size - 1)

    def build(self, encoder: Encoder, ctx: BuildContext) -> dict[str, nn.Module]:
        from urrlkit.pretext.heads import mlp_head

        dim = encoder.feature_dim
        # simclr_projection_head with its hidden width open: the same layers, BN and N(0, 0.01) kernels.
        return {"head": mlp_head(dim, self.head_hidden or dim, self.head_dim, self.head_layers, hidden_bias=False,
                                 last_bias=False, last_bn="scale", weight_init="simclr")}

    def forward(self, model: PretextModel, views: list[Tensor], index: Tensor, progress: Progress) -> StepOutput:
        import torch

        from urrlkit.engine.progress import StepOutput
        from urrlkit.pretext.common import rank_world
        from urrlkit.pretext.distributed import gather_with_grad
        from urrlkit.pretext.losses import nt_xent

        n = views[0].shape[0]
        feats = model.encoder(torch.cat([views[0], views[1]]))  # one batch of 2N: BN over both views
        z1, z2 = model.parts["head"](feats).float().split(n)
        rank, world = rank_world()
        z1_all, z2_all = (gather_with_grad(z1), gather_with_grad(z2)) if world > 1 else (None, None)
        loss = nt_xent(z1, z2, self.temperature, z1_all, z2_all, rank) * (2 if self.loss_sum else 1)
        return StepOutput(loss, features=feats[:n], embeddings=(z1.detach(), z2.detach()))

    def warnings(self, model: PretextModel, ctx: BuildContext) -> list[str]:
        if ctx.processes == 1:
            return []
        return [f"warning: SimCLR's BN statistics are per process here ({ctx.batch_per_process} images × 2 views "
                "each), not over the global batch as the reference's global BN (run.py --global_bn)"]
