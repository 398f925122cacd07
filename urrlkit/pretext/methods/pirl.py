"""PIRL (Misra & van der Maaten 2020) with the URRL family sampler (paper App. B).

views[0] plays the image I and views[1] the source of its transformation I^t, a jigsaw (urrlkit/pretext/jigsaw.py:
each patch through the encoder on its own, g projecting and concatenating them in a random order per image);
f projects v_I. With `jigsaw_grid = 0`, I^t is the whole second view and g = f's architecture.

Loss = λ·L(m_I, g(v_{I^t})) + (1 − λ)·L(m_I, f(v_I)) (PIRL Eq. 5; VISSL loss_weights [0.5, 0.5]), with L the
NCE of InstDis against `negatives` uniformly drawn bank entries (VISSL `loss_type: nce`, 32,000 negatives;
Z from the first batch, on the jigsaw term as VISSL's first output), or its softmax form
(`bank_loss = "infonce"`, PyContrast). Both terms share the drawn negatives (PyContrast; VISSL draws per term).
m_I is updated by momentum from f(v_I) only (VISSL update_mem_with_emb_index = the image head). Defaults: the
VISSL settings named in recipes/paper/appendix_b/pirl.toml."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from urrlkit.config.sections import _error_at
from urrlkit.pretext.methods.grouped_bn import GroupedBNSettings

if TYPE_CHECKING:
    from torch import Tensor, nn

    from urrlkit.engine.progress import Progress, StepOutput
    from urrlkit.models import Encoder
    from urrlkit.pretext.model import BuildContext, PretextModel


class PIRL(GroupedBNSettings):
    """PIRL over a memory bank of one entry per training image (`forward` takes their indices)."""

    method: Literal["pirl"] = "pirl"
    jigsaw_grid: int = Field(3, ge=0, le=16, description="I^t: grid×grid jigsaw patches; 0 = the whole view")
    pirl_lambda: float = Field(0.5, ge=0, le=1, description="λ, weight of the transformed term (PIRL Eq. 5)")
    head_dim: int = Field(128, ge=1, le=65536, description="embedding size")
    head_hidden: int | None = Field(None, ge=1, le=65536, description="MLP heads' hidden width when mlp")
    mlp: bool = Field(False, description="2-layer MLP heads instead of linear ones")
    temperature: float = Field(0.07, gt=0, description="τ (VISSL nce_loss_with_memory.temperature)")
    momentum: float = Field(0.5, ge=0, le=1, description="memory-bank momentum")
    negatives: int = Field(32000, ge=1, le=2**20, description="bank entries drawn per image, shared by both terms")
    bank_loss: Literal["nce", "infonce"] = Field("nce", description="memory-bank objective")

    representation_family = "instdis"
    summary = "PIRL (memory bank, jigsaw-invariant)"

    def check(self, batch_size: int, image_size: int) -> None:
        # jigsaw.py jigsaw_geometry's arithmetic, without torch: the 255/224 source cut into grid cells.
        if self.jigsaw_grid and round(image_size * 255 / 224) // self.jigsaw_grid < 1:
            raise _error_at("pretext.jigsaw_grid", f"{self.jigsaw_grid} leaves no pixels per cell of a "
                            f"{image_size}-px view")
        super().check(batch_size, image_size)

    def build(self, encoder: Encoder, ctx: BuildContext) -> dict[str, nn.Module]:
        import torch

        from urrlkit.pretext.blocks import NCENormaliser, RandomStream
        from urrlkit.pretext.common import MemoryBank, head, rank_world
        from urrlkit.pretext.jigsaw import JigsawHead

        self.groups(ctx)
        dim, hidden, mlp = self.head_dim, self.head_hidden, self.mlp
        head_f = head(encoder.feature_dim, dim, hidden, mlp)  # f: embedding of the untransformed image
        head_g = (JigsawHead(head(encoder.feature_dim, dim, hidden, mlp), dim, self.jigsaw_grid ** 2)
                  if self.jigsaw_grid else head(encoder.feature_dim, dim, hidden, mlp))
        memory, normaliser = MemoryBank(ctx.num_samples, dim, self.momentum), NCENormaliser()
        # Patch offsets and orders: seeded from the global stream (set from run.seed before the model is built),
        # one stream per process as each process cuts its own images.
        seed = int(torch.randint(0, 2**31 - 1, ())) + 7919 * rank_world()[0]
        return {"head_f": head_f, "head_g": head_g, "memory": memory, "normaliser": normaliser,
                "jigsaw": RandomStream(seed)}

    def forward(self, model: PretextModel, views: list[Tensor], index: Tensor, progress: Progress) -> StepOutput:
        import torch
        import torch.nn.functional as F

        from urrlkit.engine.progress import StepOutput
        from urrlkit.pretext.blocks import NCENormaliser, RandomStream, bank_objective
        from urrlkit.pretext.common import MemoryBank, grouped_forward
        from urrlkit.pretext.jigsaw import jigsaw_patches, jigsaw_source
        from urrlkit.pretext.losses import bank_scores

        p, groups, n = model.parts, self.groups(model.ctx), model.ctx.num_samples
        memory, normaliser = model.part("memory", MemoryBank), model.part("normaliser", NCENormaliser)
        b = views[0].shape[0]
        # Two encoder passes, so images and patches keep their own BN statistics (as VISSL and PyContrast).
        feats = grouped_forward(model.encoder, views[0], groups)
        f = F.normalize(p["head_f"](feats), dim=1).float()
        if self.jigsaw_grid:
            gen, cells = model.part("jigsaw", RandomStream).gen, self.jigsaw_grid ** 2
            patches = jigsaw_patches(jigsaw_source(views[1]), self.jigsaw_grid, gen)
            order = torch.rand(b, cells, generator=gen).argsort(dim=1).to(views[1].device)
            g = F.normalize(p["head_g"](grouped_forward(model.encoder, patches, groups), order), dim=1).float()
        else:
            g = F.normalize(p["head_g"](grouped_forward(model.encoder, views[1], groups)), dim=1).float()
        pos = memory.bank[index].float()
        neg = memory.sample(b, self.negatives, f.device).float()
        loss_t = bank_objective(bank_scores(g, pos, neg), normaliser, self.bank_loss, self.temperature, n)
        loss_i = bank_objective(bank_scores(f, pos, neg), normaliser, self.bank_loss, self.temperature, n)
        memory.update(index, f)
        # Tensors, read back by the loop on log steps only (no host sync per step).
        stats: dict[str, Tensor | float] = {"loss_transformed": loss_t.detach()}
        if self.bank_loss == "nce":
            stats["nce_z"] = normaliser.z.clone()
        loss = self.pirl_lambda * loss_t + (1 - self.pirl_lambda) * loss_i
        return StepOutput(loss, features=feats, embeddings=(f.detach(), g.detach()), stats=stats)
