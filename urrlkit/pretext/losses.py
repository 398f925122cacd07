"""Contrastive losses as pure functions (paper Eq. 1 and the InstDis / PIRL objectives of App. B)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def nce_instdis(feat: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float, z: float,
                n_data: int) -> torch.Tensor:
    """Non-parametric NCE of InstDis (Wu et al. 2018, Eq. 5-7).

    P(i|v) = exp(v·f_i/τ) / Z; with uniform noise P_n = 1/n and K noise samples,
    h = P / (P + K·P_n) and L = −log h(pos) − Σ log(1 − h(neg)).
    feat (B, D); pos (B, D) memory entries of the same images; neg (B, K, D) random memory entries.
    """
    k = neg.shape[1]
    p_pos = torch.exp((feat * pos).sum(-1) / temperature) / z
    p_neg = torch.exp(torch.einsum("bd,bkd->bk", feat, neg) / temperature) / z
    noise = k / n_data
    eps = 1e-7
    loss_pos = -torch.log(p_pos / (p_pos + noise) + eps)
    loss_neg = -torch.log(noise / (p_neg + noise) + eps).sum(-1)
    return (loss_pos + loss_neg).mean()


def nce_normaliser(feat: torch.Tensor, neg: torch.Tensor, temperature: float, n_data: int) -> float:
    """InstDis estimates Z once, from the first batch: Z ≈ n · mean exp(v·f/τ) over the noise samples."""
    with torch.no_grad():
        return float(torch.exp(torch.einsum("bd,bkd->bk", feat, neg) / temperature).mean() * n_data)


def memory_infonce(feat: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, temperature: float) -> torch.Tensor:
    """PIRL's contrastive term against a memory bank, in its softmax (InfoNCE) form:
    −log exp(f·m⁺/τ) / (exp(f·m⁺/τ) + Σ exp(f·m⁻/τ)). feat, pos (B, D); neg (B, K, D)."""
    l_pos = (feat * pos).sum(-1, keepdim=True)
    l_neg = torch.einsum("bd,bkd->bk", feat, neg)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(feat.shape[0], dtype=torch.long, device=feat.device))

