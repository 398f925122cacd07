"""InstDis (Wu et al. 2018) with the URRL family sampler (paper App. B): one augmented view per image,
a memory bank of embeddings, and non-parametric NCE against uniformly sampled bank entries."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from urrlkit.models import Encoder
from urrlkit.pretext.common import MemoryBank, head
from urrlkit.pretext.losses import nce_instdis, nce_normaliser
from urrlkit.recipe import PretextConfig
from urrlkit.registry import PRETEXTS


class InstDis(nn.Module):
    def __init__(self, encoder: Encoder, cfg: PretextConfig, num_samples: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head(encoder.feature_dim, cfg)
        self.memory = MemoryBank(num_samples, cfg.head_dim, cfg.momentum)
        self.k = cfg.queue_size
        self.t = cfg.temperature
        self.n = num_samples
        self.register_buffer("z", torch.zeros(()))  # NCE normaliser, estimated on the first batch

    def forward(self, views: list[torch.Tensor], index: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        feat = F.normalize(self.head(self.encoder(views[0])), dim=1)
        neg = self.memory.sample(feat.shape[0], self.k, feat.device)
        if float(self.z) == 0.0:
            self.z.fill_(nce_normaliser(feat.float(), neg.float(), self.t, self.n))
        loss = nce_instdis(feat.float(), self.memory.bank[index].float(), neg.float(), self.t, float(self.z), self.n)
        self.memory.update(index, feat)
        return loss, {"nce_z": float(self.z)}


PRETEXTS.add("instdis", InstDis)
