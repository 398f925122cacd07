"""InstDis (Wu et al. 2018) with the URRL family sampler (paper App. B): one augmented view per image, a memory
bank of embeddings, and non-parametric NCE against uniformly sampled bank entries.

Faithful to zhirongw/lemniscate.pytorch (main.py, lib/NCEAverage.py, lib/NCECriterion.py): a linear 128-d head,
L2-normalised; K noise entries drawn uniformly from the bank (P_n = 1/n); P(i|v) = exp(v·f_i/τ)/Z with Z
estimated once, from the first batch, as n · mean exp(v·f/τ) over the positive and noise columns; the NCE loss
of NCECriterion; the bank entry of each image replaced by normalise(m·f_old + (1 − m)·v) after the step.
`bank_loss = "infonce"` swaps the NCE for the softmax form (PyContrast's InsDis). Defaults: lemniscate's main.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from urrlkit.pretext.methods.grouped_bn import GroupedBNSettings

if TYPE_CHECKING:
    from torch import Tensor, nn

    from urrlkit.engine.progress import Progress, StepOutput
    from urrlkit.models import Encoder
    from urrlkit.pretext.model import BuildContext, PretextModel


class InstDis(GroupedBNSettings):
    """InstDis over a memory bank of one entry per training image (`forward` takes their indices); uses views[0]."""

    method: Literal["instdis"] = "instdis"
    head_dim: int = Field(128, ge=1, le=65536, description="embedding size (--low-dim)")
    head_hidden: int | None = Field(None, ge=1, le=65536, description="MLP head hidden width when mlp; None = "
                                    "the encoder's feature size")
    mlp: bool = Field(False, description="a 2-layer MLP head instead of lemniscate's single linear layer")
    temperature: float = Field(0.07, gt=0, description="τ (--nce-t)")
    momentum: float = Field(0.5, ge=0, le=1, description="memory-bank momentum (--nce-m)")
    negatives: int = Field(4096, ge=1, le=2**20, description="noise entries per image, uniform over the bank "
                           "(--nce-k)")
    bank_loss: Literal["nce", "infonce"] = Field("nce", description="NCECriterion, or its softmax form")

    representation_family = "instdis"
    summary = "InstDis (memory bank + NCE)"

    def build(self, encoder: Encoder, ctx: BuildContext) -> dict[str, nn.Module]:
        from urrlkit.pretext.blocks import NCENormaliser
        from urrlkit.pretext.common import MemoryBank, head

        self.groups(ctx)
        return {"head": head(encoder.feature_dim, self.head_dim, self.head_hidden, self.mlp),
                "memory": MemoryBank(ctx.num_samples, self.head_dim, self.momentum), "normaliser": NCENormaliser()}

    def forward(self, model: PretextModel, views: list[Tensor], index: Tensor, progress: Progress) -> StepOutput:
        import torch.nn.functional as F

        from urrlkit.engine.progress import StepOutput
        from urrlkit.pretext.blocks import NCENormaliser, bank_objective
        from urrlkit.pretext.common import MemoryBank, grouped_forward
        from urrlkit.pretext.losses import bank_scores

        memory, normaliser = model.part("memory", MemoryBank), model.part("normaliser", NCENormaliser)
        feats = grouped_forward(model.encoder, views[0], self.groups(model.ctx))
        emb = F.normalize(model.parts["head"](feats), dim=1).float()
        neg = memory.sample(emb.shape[0], self.negatives, emb.device).float()
        own = memory.bank[index].float()
        scores = bank_scores(emb, own, neg)
        loss = bank_objective(scores, normaliser, self.bank_loss, self.temperature,
                              model.ctx.num_samples)
        memory.update(index, emb)
        stats: dict[str, Tensor | float] = {"nce_z": normaliser.z.clone()} if self.bank_loss == "nce" else {}
        # The positive pair of InstDis is the view and its image's bank entry.
        return StepOutput(loss, features=feats, embeddings=(emb.detach(), own), stats=stats)

