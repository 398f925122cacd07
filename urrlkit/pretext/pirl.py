"""PIRL (Misra & van der Maaten 2020) with the URRL family sampler (paper App. B).

views[0] plays the image I and views[1] the source of its transformation I^t. As in PIRL, I^t is a jigsaw:
the view is cut into a grid × grid lattice and one random patch is taken per cell (VISSL's
ImgPilToPatchesAndImage, PyContrast's JigsawCrop: a 255-px crop, 85-px cells, 64-px patches — here the view is
resized by 255/224 first, so a 224-px view gives exactly that geometry). Each patch goes through the encoder on
its own; g projects every patch to `head_dim`, concatenates the patches in a random order per image and
projects the concatenation to `head_dim` (PIRL §4.1, PyContrast JigsawHead, VISSL's PIRL head);
f projects v_I. With `jigsaw_grid = 0`, I^t is the whole second view and g = f's architecture.

Loss = λ·L(m_I, g(v_{I^t})) + (1 − λ)·L(m_I, f(v_I)) (PIRL Eq. 5; VISSL loss_weights [0.5, 0.5]), with L the
NCE of InstDis against `negatives` uniformly drawn bank entries (VISSL `loss_type: nce`, 32,000 negatives;
Z from the first batch, on the jigsaw term as VISSL's first output), or its softmax form
(`bank_loss = "infonce"`, PyContrast). Both terms share the drawn negatives (PyContrast; VISSL draws per term).
m_I is updated by momentum from f(v_I) only (VISSL update_mem_with_emb_index = the image head)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from urrlkit.models import Encoder
from urrlkit.pretext.common import MemoryBank, head, rank_world, resolve_bn_groups
from urrlkit.pretext.instdis import NCENormaliser, bank_objective
from urrlkit.pretext.losses import bank_scores
from urrlkit.pretext.moco import grouped_forward
from urrlkit.registry import PRETEXTS

# PIRL's jigsaw geometry relative to the 224-px image: a 255-px source cut into 85-px cells, 64-px patches.
JIGSAW_SOURCE = 255 / 224
JIGSAW_PATCH = 64 / 85


def jigsaw_geometry(image_size: int, grid: int) -> tuple[int, int, int]:
    """(source side, cell side, patch side) for a view of `image_size`: (255, 85, 64) at 224 px, grid 3."""
    source = round(image_size * JIGSAW_SOURCE)
    cell, patch = jigsaw_cells(source, grid)
    return source, cell, patch


def jigsaw_cells(source: int, grid: int) -> tuple[int, int]:
    """(cell side, patch side) of a grid × grid jigsaw cut from a `source`-px square."""
    cell = source // grid
    if cell < 1:
        raise ValueError(f"pretext.jigsaw_grid = {grid} leaves no pixels per cell of a {source}-px view")
    return cell, max(1, round(cell * JIGSAW_PATCH))


def jigsaw_source(x: torch.Tensor) -> torch.Tensor:
    """The view resized by 255/224, the side PIRL cuts its jigsaw from (bilinear, as the crop's resampling)."""
    source = round(x.shape[-1] * JIGSAW_SOURCE)
    return F.interpolate(x, size=(source, source), mode="bilinear", align_corners=False)


def jigsaw_patches(x: torch.Tensor, grid: int, g: torch.Generator) -> torch.Tensor:
    """(B·grid², C, p, p) patches cut from the square batch x, grid² consecutive rows per image in row-major
    cell order, each at a random offset inside its cell (independent per patch, as PyContrast's JigsawCrop)."""
    b, c, size, _ = x.shape
    cell, patch = jigsaw_cells(size, grid)
    n = grid * grid
    offsets = torch.randint(0, cell - patch + 1, (b, n, 2), generator=g).to(x.device)
    corner = torch.arange(grid, device=x.device) * cell
    top = corner.repeat_interleave(grid).view(1, n) + offsets[..., 0]  # row-major: cell k is (k // g, k % g)
    left = corner.repeat(grid).view(1, n) + offsets[..., 1]
    span = torch.arange(patch, device=x.device)
    rows = (top[..., None] + span).view(b, n, patch, 1)
    cols = (left[..., None] + span).view(b, n, 1, patch)
    img = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    out = x.permute(0, 2, 3, 1)[img, rows, cols]  # (b, n, patch, patch, c)
    return out.permute(0, 1, 4, 2, 3).reshape(b * n, c, patch, patch)


class JigsawHead(nn.Module):
    """g of PIRL: per-patch projection, concatenation in a per-image random order, a second projection."""

    def __init__(self, per_patch: nn.Module, dim: int, n_patches: int) -> None:
        super().__init__()
        self.per_patch = per_patch
        self.fc = nn.Linear(dim * n_patches, dim)
        self.n = n_patches

    def forward(self, feats: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """feats (B·n, d) in cell order; order (B, n) a permutation per image."""
        z = self.per_patch(feats)
        z = z.view(-1, self.n, z.shape[1])
        z = z.gather(1, order[..., None].expand_as(z))
        return self.fc(z.flatten(1))


class PIRL(nn.Module):
    """PIRL over a memory bank of `num_samples` entries (one per training image; `forward` takes their indices).

    Plain values, defaults the VISSL settings named above (recipes/paper/appendix_b/pirl.toml):
    `jigsaw_grid` × `jigsaw_grid` patches (0 = the whole view), `pirl_lambda` λ of the transformed term, `dim`,
    linear heads unless `mlp`, `temperature`, bank `momentum`, `negatives` per image, `bank_loss` "nce" or
    "infonce", `bn_groups` BN groups per process ("auto" resolved with `processes`, default the current process
    group)."""

    def __init__(self, encoder: Encoder, *, num_samples: int, jigsaw_grid: int = 3, pirl_lambda: float = 0.5,
                 dim: int = 128, hidden_dim: int | None = None, mlp: bool = False, temperature: float = 0.07,
                 momentum: float = 0.5, negatives: int = 32000, bank_loss: str = "nce", bn_groups: int | str = 1,
                 processes: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head_f = head(encoder.feature_dim, dim, hidden_dim, mlp)  # f: embedding of the untransformed image
        self.grid = jigsaw_grid
        self.head_g: nn.Module  # g: the jigsaw head over patches, or a head over the whole transformed view
        if self.grid:
            self.head_g = JigsawHead(head(encoder.feature_dim, dim, hidden_dim, mlp), dim, self.grid ** 2)
        else:
            self.head_g = head(encoder.feature_dim, dim, hidden_dim, mlp)  # g: the whole transformed view
        self.memory = MemoryBank(num_samples, dim, momentum)
        self.k = negatives
        self.t = temperature
        self.lam = pirl_lambda
        self.loss = bank_loss
        self.n = num_samples
        self.normaliser = NCENormaliser()  # one Z for both terms, estimated on the first jigsaw batch
        # BN statistics per group of the batch, as each GPU of the reference runs computes its own.
        self.groups = resolve_bn_groups(bn_groups, rank_world()[1] if processes is None else processes)
        # Patch offsets and orders: seeded from the global stream (set from run.seed before the model is built),
        # one stream per process as each process cuts its own images.
        seed = int(torch.randint(0, 2**31 - 1, ())) + 7919 * rank_world()[0]
        self.jigsaw_gen = torch.Generator().manual_seed(seed)

    @property
    def z(self) -> torch.Tensor:
        return self.normaliser.z

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return grouped_forward(self.encoder, x, self.groups)

    def embed_transformed(self, x: torch.Tensor) -> torch.Tensor:
        if not self.grid:
            return F.normalize(self.head_g(self.embed(x)), dim=1)
        b, n = x.shape[0], self.grid ** 2
        patches = jigsaw_patches(jigsaw_source(x), self.grid, self.jigsaw_gen)
        order = torch.rand(b, n, generator=self.jigsaw_gen).argsort(dim=1).to(x.device)
        return F.normalize(self.head_g(self.embed(patches), order), dim=1)

    def forward(self, views: list[torch.Tensor], index: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b = views[0].shape[0]
        # Two encoder passes, so images and patches keep their own BN statistics (as VISSL and PyContrast).
        f = F.normalize(self.head_f(self.embed(views[0])), dim=1).float()
        g = self.embed_transformed(views[1]).float()
        pos = self.memory.bank[index].float()
        neg = self.memory.sample(b, self.k, f.device).float()
        loss_t = bank_objective(bank_scores(g, pos, neg), self.normaliser, self.loss, self.t, self.n)
        loss_i = bank_objective(bank_scores(f, pos, neg), self.normaliser, self.loss, self.t, self.n)
        self.memory.update(index, f)
        # Tensors, read back by the loop on log steps only (no host sync per step).
        stats = {"loss_transformed": loss_t.detach()}
        if self.loss == "nce":
            stats["nce_z"] = self.z.clone()
        return self.lam * loss_t + (1 - self.lam) * loss_i, stats


PRETEXTS.add("pirl", PIRL)
