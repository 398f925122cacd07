"""MoCo v3 (Chen, Xie & He 2021): a base encoder with a projector and a predictor, a momentum encoder (a copy of the
encoder and the projector, no predictor), no queue: the keys are the other view's momentum projections of the whole
global batch, and the loss is the symmetric InfoNCE ctr(q1, k2) + ctr(q2, k1), each ×2τ.

As facebookresearch/moco-v3 (moco/builder.py MoCo / MoCo_ResNet / MoCo_ViT, main_moco.py):
- heads (pretext/heads.py moco_v3_heads): ResNet — projector 2 layers, predictor 2 layers without its last BN;
  ViT — projector 3 layers, predictor 2 layers with it; hidden 4096, out 256 (--moco-mlp-dim, --moco-dim);
- the momentum m of each iteration from the fractional epoch, half-cycle cosine to 1 (--moco-m-cos,
  adjust_moco_momentum), the momentum encoder updated with it inside the forward, after the queries and before
  the keys (builder.py forward);
- keys gathered from every process without gradient (concat_all_gather), the positive of query i of rank r at
  column N·r + i (pretext/losses.py moco_v3_loss);
- two views with BYOL's asymmetric augmentation (main_moco.py augmentation1 / augmentation2): the `byol` family
  with blur p 1.0 and no solarization for view 1, blur p 0.1 and solarization p 0.2 for view 2, its crop scale
  (crop_min, 1) (--crop-min). Every view draws its family by paper Eq. 2; the robust family keeps its own crop;
- `stop_grad_conv1`: a ViT's patch projection frozen at its random initialisation (vits.py);
- ResNets zero-initialise the last BN of each residual block (main_moco.py builds torchvision's ResNets with
  zero_init_residual=True).

Deviations, named: BN statistics are per process (the reference converts every BN to SyncBatchNorm over all GPUs;
urrlkit's loop does not); a timm ViT keeps timm's learned position embedding and initialisation (moco-v3's vits.py
uses a fixed 2-D sin-cos embedding and its own xavier init); the keys of the health monitor are the normalised
(q1, k2) pair. Defaults are main_moco.py's argparse defaults (ResNet-50: τ 1.0, m 0.99), except momentum_cos,
which every setup of CONFIG.md turns on.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from urrlkit.config.pretext import MethodSettings
from urrlkit.config.sections import _error_at
from urrlkit.views import ViewGroup

if TYPE_CHECKING:
    from torch import Tensor, nn

    from urrlkit.engine.progress import Progress, StepOutput
    from urrlkit.models import Encoder
    from urrlkit.pretext.model import BuildContext, PretextModel

# main_moco.py augmentation1 / augmentation2 (BYOL's T and T′): (Gaussian blur p, solarization p) per view.
VIEW_BLUR_SOLARIZE = ((1.0, 0.0), (0.1, 0.2))
# The family those probabilities belong to (augment/families.py byol; the method's representation family).
BYOL_FAMILY = "byol"


def head_kind_of(encoder: Encoder, kind: str) -> str:
    """'resnet' or 'vit' (moco-v3 builds MoCo_ViT for the vit_* archs, MoCo_ResNet otherwise); 'auto' = 'vit'
    when the trunk has a patch embedding (timm's vision transformers), else 'resnet'."""
    if kind != "auto":
        return kind
    return "vit" if hasattr(encoder.trunk, "patch_embed") else "resnet"


def freeze_patch_projection(encoder: Encoder) -> None:
    """moco-v3 vits.py stop_grad_conv1: the patch projection's weight and bias take no gradient (a fixed random
    projection). One line naming the field when the backbone has none."""
    from urrlkit.errors import RecipeError

    proj = getattr(getattr(encoder.trunk, "patch_embed", None), "proj", None)
    if proj is None or not hasattr(proj, "weight"):
        raise RecipeError(f"pretext.stop_grad_conv1 = true needs a ViT backbone with a patch embedding "
                          f"(trunk.patch_embed.proj); {type(encoder.trunk).__name__} has none")
    for p in proj.parameters():
        p.requires_grad_(False)


def zero_init_residual(encoder: Encoder) -> None:
    """torchvision's ResNet(zero_init_residual=True): γ = 0 in the last BN of every residual block (bn3 of a
    Bottleneck, bn2 of a BasicBlock), so each block starts as the identity. Draws no random numbers."""
    from torch import nn
    from torchvision.models.resnet import BasicBlock, Bottleneck

    for m in encoder.modules():
        last = m.bn3 if isinstance(m, Bottleneck) else m.bn2 if isinstance(m, BasicBlock) else None
        if isinstance(last, nn.BatchNorm2d) and last.weight is not None:
            nn.init.zeros_(last.weight)


class MoCoV3(MethodSettings):
    """MoCo v3: views[0] and views[1] are the two views (main_moco.py's augmentation1 and augmentation2)."""

    method: Literal["moco_v3"] = "moco_v3"
    temperature: float = Field(1.0, gt=0, description="τ (--moco-t: 1.0 for ResNet-50, 0.2 for ViTs in CONFIG.md)")
    momentum: float = Field(0.99, ge=0, le=1, description="m₀ of the momentum encoder (--moco-m)")
    momentum_cos: bool = Field(True, description="raise m to 1 by a half-cycle cosine per iteration (--moco-m-cos; "
                               "off in main_moco.py's argparse, on in every CONFIG.md setup)")
    dim: int = Field(256, ge=1, le=65536, description="projector / predictor output (--moco-dim)")
    mlp_dim: int = Field(4096, ge=1, le=65536, description="hidden width of both MLPs (--moco-mlp-dim)")
    head_kind: Literal["auto", "resnet", "vit"] = Field(
        "auto", description="builder.py MoCo_ResNet (projector 2 layers, predictor without last BN) or MoCo_ViT "
        "(projector 3 layers, predictor with it); auto = vit when the trunk has a patch_embed")
    stop_grad_conv1: bool = Field(False, description="freeze a ViT's random patch projection (--stop-grad-conv1)")
    crop_min: float = Field(0.08, gt=0, le=1, description="the byol family's crop scale (crop_min, 1) "
                            "(--crop-min; CONFIG.md's ResNet-50 runs use 0.2)")
    zero_init_residual: bool = Field(True, description="ResNets: zero γ in each block's last BN (main_moco.py)")

    representation_family = BYOL_FAMILY
    summary = "MoCo v3 (symmetric InfoNCE against a momentum encoder, no queue)"

    def view_groups(self) -> list[ViewGroup]:
        # Two groups of one view: each view has its own blur / solarization probabilities. They are set on the
        # byol family only, and only when the family list holds it (group parameters of a family the list lacks
        # are refused by the sampler); Eq. 2 still draws each view's family.
        has_byol = any(f.name == BYOL_FAMILY for f in self.family_weights())
        return [ViewGroup(1, params={BYOL_FAMILY: {"blur_p": blur, "solarize_p": sol, "scale_min": self.crop_min}}
                          if has_byol else {}, name=f"view{i + 1}")
                for i, (blur, sol) in enumerate(VIEW_BLUR_SOLARIZE)]

    def check(self, batch_size: int, image_size: int) -> None:
        if self.views != 2:
            raise _error_at("pretext.views", f"MoCo v3 takes exactly 2 views (its two augmentations), got {self.views}")

    def chance_loss(self, batch_size: int) -> float | None:
        # Each of the two terms is 2τ · cross-entropy over the global batch of keys: 2τ · ln N at chance.
        return 2 * (2 * self.temperature * math.log(batch_size))

    def momentum_at(self, progress: Progress) -> float:
        """m for the step `progress` describes: main_moco.py adjust_moco_momentum(epoch + i / iters_per_epoch)."""
        from urrlkit.pretext.schedules import moco_v3_momentum

        if not self.momentum_cos:
            return self.momentum
        return moco_v3_momentum(self.momentum, progress.epoch_float, progress.epochs)

    def build(self, encoder: Encoder, ctx: BuildContext) -> dict[str, nn.Module]:
        from urrlkit.pretext.ema import momentum_copy
        from urrlkit.pretext.heads import moco_v3_heads

        kind = head_kind_of(encoder, self.head_kind)
        if self.stop_grad_conv1:
            freeze_patch_projection(encoder)
        if kind == "resnet" and self.zero_init_residual:
            zero_init_residual(encoder)
        projector, predictor = moco_v3_heads(encoder.feature_dim, vit=kind == "vit", dim=self.dim,
                                             mlp_dim=self.mlp_dim)
        # builder.py: the momentum encoder starts equal to the base encoder (its projector included).
        return {"projector": projector, "predictor": predictor, "encoder_k": momentum_copy(encoder),
                "projector_k": momentum_copy(projector)}

    def forward(self, model: PretextModel, views: list[Tensor], index: Tensor, progress: Progress) -> StepOutput:
        import torch
        import torch.nn.functional as F
        from accelerate.utils import gather

        from urrlkit.engine.progress import StepOutput
        from urrlkit.pretext.common import rank_world
        from urrlkit.pretext.ema import ema_update_
        from urrlkit.pretext.losses import moco_v3_loss

        p, (x1, x2) = model.parts, views
        m = self.momentum_at(progress)
        # builder.py forward: one pass per view, so each view has its own BN statistics.
        f1, f2 = model.encoder(x1), model.encoder(x2)
        q1, q2 = p["predictor"](p["projector"](f1)), p["predictor"](p["projector"](f2))
        with torch.no_grad():
            ema_update_([*p["encoder_k"].parameters(), *p["projector_k"].parameters()],
                        [*model.encoder.parameters(), *p["projector"].parameters()], m)
            k1, k2 = (p["projector_k"](p["encoder_k"](x)) for x in (x1, x2))
        rank, world = rank_world()
        k1_all, k2_all = (gather(k.contiguous()) if world > 1 else k for k in (k1, k2))
        loss = (moco_v3_loss(q1.float(), k2_all.float(), self.temperature, rank)
                + moco_v3_loss(q2.float(), k1_all.float(), self.temperature, rank))
        emb = (F.normalize(q1.detach().float(), dim=1), F.normalize(k2.float(), dim=1))
        return StepOutput(loss, features=f1, embeddings=emb, stats={"moco_m": m})

    def warnings(self, model: PretextModel, ctx: BuildContext) -> list[str]:
        if ctx.processes == 1:
            return []
        return [f"warning: MoCo v3 BN statistics are per process ({ctx.processes} processes); the reference "
                "synchronises them over all GPUs (SyncBatchNorm)"]
