"""PIRL (Misra & van der Maaten 2020) with the URRL family sampler (paper App. B).

views[0] plays the image I and views[1] its transformation I^t (PIRL used jigsaw; with URRL the transformation
is drawn by the family sampler). Loss = λ·L(m_I, g(v_{I^t})) + (1 − λ)·L(m_I, f(v_I)), where m_I is the
memory-bank entry of I, updated by momentum from f(v_I), and L is contrastive against bank negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from urrlkit.models import Encoder
from urrlkit.pretext.common import MemoryBank, head
from urrlkit.pretext.losses import memory_infonce
from urrlkit.recipe import PretextConfig
from urrlkit.registry import PRETEXTS


class PIRL(nn.Module):
    def __init__(self, encoder: Encoder, cfg: PretextConfig, num_samples: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head_f = head(encoder.feature_dim, cfg)  # f: embedding of the untransformed image
        self.head_g = head(encoder.feature_dim, cfg)  # g: embedding of the transformed image
        self.memory = MemoryBank(num_samples, cfg.head_dim, cfg.momentum)
        self.k = cfg.queue_size
        self.t = cfg.temperature
        self.lam = cfg.pirl_lambda

    def forward(self, views: list[torch.Tensor], index: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        b = views[0].shape[0]
        feats = self.encoder(torch.cat([views[0], views[1]]))
        f = F.normalize(self.head_f(feats[:b]), dim=1)
        g = F.normalize(self.head_g(feats[b:]), dim=1)
        pos = self.memory.bank[index].float()
        neg = self.memory.sample(b, self.k, f.device).float()
        loss_t = memory_infonce(g.float(), pos, neg, self.t)
        loss_i = memory_infonce(f.float(), pos, neg, self.t)
        self.memory.update(index, f)
        return self.lam * loss_t + (1 - self.lam) * loss_i, {"loss_transformed": float(loss_t.detach())}


PRETEXTS.add("pirl", PIRL)
