"""InstDis (Wu et al. 2018) with the URRL family sampler (paper App. B): one augmented view per image,
a memory bank of embeddings, and non-parametric NCE against uniformly sampled bank entries.

Faithful to lemniscate.pytorch (main.py, lib/NCEAverage.py, lib/NCECriterion.py): a linear 128-d head,
L2-normalised; K noise entries drawn uniformly from the bank (P_n = 1/n); P(i|v) = exp(v·f_i/τ)/Z with Z
estimated once, from the first batch, as n · mean exp(v·f/τ) over the positive and noise columns; the NCE loss
of NCECriterion; the bank entry of each image replaced by normalise(m·f_old + (1 − m)·v) after the step.
`bank_loss = "infonce"` swaps the NCE for the softmax form (PyContrast's InsDis)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from urrlkit.models import Encoder
from urrlkit.pretext.common import MemoryBank, distributed, head, rank_world, resolve_bn_groups
from urrlkit.pretext.losses import bank_infonce, bank_scores, nce_loss, nce_normaliser
from urrlkit.pretext.moco import grouped_forward
from urrlkit.registry import PRETEXTS


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


class InstDis(nn.Module):
    """InstDis over a memory bank of `num_samples` entries (one per training image; `forward` takes their indices).

    Plain values, defaults those of zhirongw/lemniscate.pytorch main.py: `dim` (--low-dim), a linear head unless
    `mlp`, `temperature` (--nce-t), bank `momentum` (--nce-m), `negatives` noise entries per image (--nce-k),
    `bank_loss` "nce" or "infonce", `bn_groups` BN groups per process ("auto" resolved with `processes`, default
    the current process group)."""

    def __init__(self, encoder: Encoder, *, num_samples: int, dim: int = 128, hidden_dim: int | None = None,
                 mlp: bool = False, temperature: float = 0.07, momentum: float = 0.5, negatives: int = 4096,
                 bank_loss: str = "nce", bn_groups: int | str = 1, processes: int | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head(encoder.feature_dim, dim, hidden_dim, mlp)
        self.memory = MemoryBank(num_samples, dim, momentum)
        self.k = negatives
        self.t = temperature
        self.loss = bank_loss
        self.n = num_samples
        self.normaliser = NCENormaliser()
        # BN statistics per group of the batch, as each GPU of the reference runs computes its own.
        self.groups = resolve_bn_groups(bn_groups, rank_world()[1] if processes is None else processes)

    @property
    def z(self) -> torch.Tensor:
        return self.normaliser.z

    def forward(self, views: list[torch.Tensor], index: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        feat = F.normalize(self.head(grouped_forward(self.encoder, views[0], self.groups)), dim=1).float()
        neg = self.memory.sample(feat.shape[0], self.k, feat.device).float()
        scores = bank_scores(feat, self.memory.bank[index].float(), neg)
        loss = bank_objective(scores, self.normaliser, self.loss, self.t, self.n)
        self.memory.update(index, feat)
        return loss, {"nce_z": self.z.clone()} if self.loss == "nce" else {}


PRETEXTS.add("instdis", InstDis)
