"""Contrastive losses as pure functions (paper Eq. 1 and the InstDis / PIRL objectives of App. B).

The memory-bank objectives work on `scores`, the (B, 1 + K) dot products of each embedding with its own bank
entry (column 0) and K bank entries drawn uniformly (the noise distribution P_n = 1/n), as
lemniscate.pytorch's NCEAverage (and VISSL's NCELossWithMemory, which adapts it) lays them out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# lemniscate's NCECriterion adds eps = 1e-7 to the denominators (VISSL uses float32 eps, 1.19e-7).
NCE_EPS = 1e-7


def info_nce(q: torch.Tensor, k: torch.Tensor, negatives: torch.Tensor, temperature: float) -> torch.Tensor:
    """Paper Eq. 1 (InfoNCE, as MoCo computes it):
    L = −log exp(q·k⁺/τ) / (exp(q·k⁺/τ) + Σ_{k⁻} exp(q·k⁻/τ)), averaged over the batch.

    q, k: (B, D) L2-normalised query and positive-key embeddings; negatives: (D, K) (MoCo's queue layout).
    """
    l_pos = (q * k).sum(dim=1, keepdim=True)
    l_neg = q @ negatives
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, labels)


def bank_scores(feat: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """(B, 1 + K) dot products: column 0 with the image's own bank entry, then its K noise entries.
    feat, pos (B, D); neg (B, K, D)."""
    return torch.cat([(feat * pos).sum(-1, keepdim=True), torch.einsum("bd,bkd->bk", feat, neg)], dim=1)


def nce_normaliser(scores: torch.Tensor, temperature: float, n_data: int) -> float:
    """Z of InstDis Eq. 4, estimated once from the first batch as lemniscate's NCEAverage does:
    Z = n · mean over all B·(1 + K) entries (the positive column included) of exp(v·f/τ)."""
    with torch.no_grad():
        return float(torch.exp(scores.float() / temperature).mean() * n_data)


def nce_loss(scores: torch.Tensor, temperature: float, z: float | torch.Tensor, n_data: int) -> torch.Tensor:
    """Non-parametric NCE of InstDis (Wu et al. 2018, Eq. 5–7) and PIRL (Misra & van der Maaten 2020, Eq. 3–4),
    exactly lemniscate's NCECriterion:

    P(i|v) = exp(v·f_i/τ) / Z; with K noise samples from P_n = 1/n,
    L = −log P_pos / (P_pos + K/n + ε) − Σ_neg log (K/n) / (P_neg + K/n + ε), summed over the batch / B.
    """
    k = scores.shape[1] - 1
    p = torch.exp(scores / temperature) / z
    noise = k / n_data
    log_pos = torch.log(p[:, 0] / (p[:, 0] + noise + NCE_EPS))
    log_neg = torch.log(noise / (p[:, 1:] + noise + NCE_EPS)).sum(dim=1)
    return -(log_pos + log_neg).mean()


def bank_infonce(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """The softmax (InfoNCE) form of the memory-bank objective, as PyContrast and VISSL's
    `loss_type = cross_entropy` compute it: −log exp(s₀/τ) / Σ_j exp(s_j/τ), averaged over the batch."""
    labels = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, labels)


def nce_instdis(feat: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float, z: float,
                n_data: int) -> torch.Tensor:
    """`nce_loss` from embeddings: feat (B, D); pos (B, D) the images' bank entries; neg (B, K, D)."""
    return nce_loss(bank_scores(feat, pos, neg), temperature, z, n_data)


def memory_infonce(feat: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float) -> torch.Tensor:
    """`bank_infonce` from embeddings: feat, pos (B, D); neg (B, K, D)."""
    return bank_infonce(bank_scores(feat, pos, neg), temperature)
