"""BYOL (Grill et al. 2020): an online network (encoder, projector, predictor) regresses the target network's
projection of the other view; the target (encoder, projector) is an exponential moving average of the online one,
its decay τ raised from τ_base to 1 by a cosine over training. No negatives.

As deepmind-research byol (byol_experiment.py, configs/byol.py, utils/networks.py, utils/schedules.py):
- projector and predictor networks.MLP: Linear(4096, bias) → BN → ReLU → Linear(256, no bias), haiku's
  initialisation (pretext/heads.py byol_mlp);
- each view forwards on its own (apply_once_fn per view), so BN statistics are per view, online and target
  alike; the target runs in training mode (batch statistics) without gradient;
- loss_fn: regression_loss(p1, sg(z′2)) + regression_loss(p2, sg(z′1)), mean over the batch (pretext/losses.py
  byol_loss, summed over the two orders);
- _update_fn: the optimizer step first, then target ← target + (1 − τ)(online − target) with τ = target_ema of
  the step that ran (1 − (1 − τ_base)(cos(π k/K) + 1)/2; pretext/schedules.py byol_momentum): `after_step`,
  from the loop's checkpointed progress, so a resumed run sees the same τ. Parameters only: the target's BN
  statistics are its own;
- augmentation (augmentations.py augment_config): the `byol` family, view 1 with blur p 1.0 and no solarization,
  view 2 blur p 0.1 and solarization p 0.2 (`view_blur_p`, `view_solarize_p`), given to the sampler as two view
  groups; each view still draws its family by paper Eq. 2 (the robust family is the same for both views).

Deviations, named: the target starts as a copy of the online network (pretext/ema.py momentum_copy;
_make_initial_state initialises it from a second random key, "no significant difference" by the code's own
comment); BN statistics are per process (the reference's bn_config cross_replica_axis 'i' is global; a
multi-process launch warns); the reference's online classifier on the features is the recipe's [monitor] probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from urrlkit.config.pretext import MethodSettings
from urrlkit.config.sections import _error_at
from urrlkit.views import ViewGroup

if TYPE_CHECKING:
    from torch import Tensor, nn

    from urrlkit.engine.progress import Progress, StepOutput
    from urrlkit.models import Encoder
    from urrlkit.pretext.model import BuildContext, PretextModel

BYOL_FAMILY = "byol"  # augment/families.py byol: the family the per-view probabilities belong to


class BYOL(MethodSettings):
    """BYOL: views[0] and views[1] are T(x) and T′(x)."""

    method: Literal["byol"] = "byol"
    base_momentum: float = Field(0.996, ge=0, le=1, description="τ_base of the target decay (configs/byol.py "
                                 "base_target_ema: 0.996 at 1000 epochs, 0.99 at 100–300, 0.97 at 40)")
    proj_hidden: int = Field(4096, ge=1, le=65536, description="projector hidden width (projector_hidden_size)")
    proj_dim: int = Field(256, ge=1, le=65536, description="projection and prediction size "
                          "(projector_output_size)")
    pred_hidden: int = Field(4096, ge=1, le=65536, description="predictor hidden width (predictor_hidden_size)")
    view_blur_p: tuple[float, float] = Field((1.0, 0.1), description="the byol family's blur probability in view "
                                             "1 and view 2 (augment_config gaussian_blur apply_prob)")
    view_solarize_p: tuple[float, float] = Field((0.0, 0.2), description="its solarization probability in view 1 "
                                                 "and view 2 (augment_config solarize apply_prob)")

    representation_family = BYOL_FAMILY
    summary = "BYOL (online predictor regresses an EMA target's projection, no negatives)"

    @field_validator("view_blur_p", "view_solarize_p")
    @classmethod
    def _probabilities(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= p <= 1 for p in v):
            raise ValueError(f"each probability must be in [0, 1], got {list(v)}")
        return v

    def view_groups(self) -> list[ViewGroup]:
        # Two groups of one view, each with its own blur / solarization on the byol family — only when the family
        # list holds it (the sampler refuses group parameters of a family the list lacks).
        has_byol = any(f.name == BYOL_FAMILY for f in self.family_weights())
        return [ViewGroup(1, params={BYOL_FAMILY: {"blur_p": blur, "solarize_p": solar}} if has_byol else {},
                          name=f"view{i + 1}")
                for i, (blur, solar) in enumerate(zip(self.view_blur_p, self.view_solarize_p, strict=True))]

    def check(self, batch_size: int, image_size: int) -> None:
        if self.views != 2:
            raise _error_at("pretext.views", f"BYOL takes exactly 2 views (T and T′), got {self.views}")

    def target_decay(self, progress: Progress) -> float:
        """τ of the target update after the step at `progress` (schedules.target_ema at that global step)."""
        from urrlkit.pretext.schedules import byol_momentum

        return byol_momentum(self.base_momentum, progress.fraction)

    def build(self, encoder: Encoder, ctx: BuildContext) -> dict[str, nn.Module]:
        from urrlkit.pretext.ema import momentum_copy
        from urrlkit.pretext.heads import byol_mlp

        projector = byol_mlp(encoder.feature_dim, self.proj_hidden, self.proj_dim)
        predictor = byol_mlp(self.proj_dim, self.pred_hidden, self.proj_dim)
        return {"projector": projector, "predictor": predictor,
                "target_encoder": momentum_copy(encoder), "target_projector": momentum_copy(projector)}

    def forward(self, model: PretextModel, views: list[Tensor], index: Tensor, progress: Progress) -> StepOutput:
        import torch

        from urrlkit.engine.progress import StepOutput
        from urrlkit.pretext.losses import byol_loss

        p = model.parts
        feats = [model.encoder(v) for v in views[:2]]  # one forward per view: BN per view, as apply_once_fn
        z = [p["projector"](f) for f in feats]
        q = [p["predictor"](zi).float() for zi in z]
        with torch.no_grad():
            t = [p["target_projector"](p["target_encoder"](v)).float() for v in views[:2]]
        loss = byol_loss(q[0], t[1]) + byol_loss(q[1], t[0])
        return StepOutput(loss, features=feats[0], embeddings=(z[0].detach(), z[1].detach()),
                          stats={"tau": self.target_decay(progress)})

    def after_step(self, model: PretextModel, progress: Progress) -> None:
        from urrlkit.pretext.ema import ema_update_

        p = model.parts
        ema_update_([*p["target_encoder"].parameters(), *p["target_projector"].parameters()],
                    [*model.encoder.parameters(), *p["projector"].parameters()], self.target_decay(progress))

    def warnings(self, model: PretextModel, ctx: BuildContext) -> list[str]:
        if ctx.processes == 1:
            return []
        return [f"warning: BYOL's BN statistics are per process here ({ctx.batch_per_process} images per view), not "
                "over the global batch as the reference's cross-replica BN (configs/byol.py bn_config)"]
