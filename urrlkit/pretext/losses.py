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


# ---- SimCLR, BYOL, MoCo v3, DINO (the method plugins assemble these; gathering across processes is theirs) ----

# google-research/simclr objective.py LARGE_NUM: subtracted from the self-similarity logits so exp() gives 0.
SIMCLR_LARGE_NUM = 1e9
# deepmind-research byol/utils/helpers.py l2_normalize: x · rsqrt(max(Σx², ε)).
BYOL_NORM_EPS = 1e-12


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, z1_all: torch.Tensor | None = None,
            z2_all: torch.Tensor | None = None, rank: int = 0) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020, Eq. 1 and Algorithm 1), as google-research/simclr objective.py
    add_contrastive_loss computes it: embeddings L2-normalised, cosine logits / τ; anchor i of view 1 has the
    positive i of view 2 and, as negatives, the other view-2 keys and every other view-1 key (its own
    self-similarity is pushed out with −LARGE_NUM), and symmetrically for view 2.

    z1, z2: (N, D) this process's projections of the two views (not yet normalised). Multi-process, as the
    reference's hidden1_large / hidden2_large: z1_all, z2_all are the (W·N, D) projections of every process in
    rank order (the caller gathers them; rows rank·N … rank·N + N − 1 are this process's own), and the local
    anchors are scored against all W·N keys with the positive at rank·N + i. The value is then this process's
    share: the mean over the W processes equals the one-process loss of the concatenated batch. The reference's
    TPU gather is differentiable, so to get its gradients the caller's gather must be too
    (torch.distributed.nn.functional.all_gather), and the per-process losses are averaged (DDP does that).

    Deviation: the reference returns loss_a + loss_b (each a mean over N anchors), twice the paper's
    Algorithm 1; this returns the paper's mean over the 2N anchors, (loss_a + loss_b) / 2.
    """
    if (z1_all is None) != (z2_all is None):
        raise ValueError("nt_xent: give both z1_all and z2_all, or neither")
    h1, h2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    h1_all = h1 if z1_all is None else F.normalize(z1_all, dim=1)
    h2_all = h2 if z2_all is None else F.normalize(z2_all, dim=1)
    n = h1.shape[0]
    if h1_all.shape[0] < (rank + 1) * n or h2_all.shape[0] != h1_all.shape[0]:
        raise ValueError(f"nt_xent: gathered embeddings of {h1_all.shape[0]} / {h2_all.shape[0]} rows cannot hold "
                         f"rank {rank}'s {n} rows")
    labels = torch.arange(n, device=h1.device) + rank * n
    self_mask = F.one_hot(labels, h1_all.shape[0]).to(h1.dtype) * SIMCLR_LARGE_NUM
    logits_aa = h1 @ h1_all.T / temperature - self_mask
    logits_bb = h2 @ h2_all.T / temperature - self_mask
    logits_ab = h1 @ h2_all.T / temperature
    logits_ba = h2 @ h1_all.T / temperature
    loss_a = F.cross_entropy(torch.cat([logits_ab, logits_aa], dim=1), labels)
    loss_b = F.cross_entropy(torch.cat([logits_ba, logits_bb], dim=1), labels)
    return (loss_a + loss_b) / 2


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss (Grill et al. 2020, Eq. 2): ‖p̂ − ẑ‖² = 2 − 2·cos(p, z) per pair, mean over the
    batch; p (N, D) the online prediction of one view, z (N, D) the target projection of the other.

    As deepmind-research byol/utils/helpers.py regression_loss (normalisation x · rsqrt(max(Σx², 1e-12))).
    The method's part (byol_experiment.py loss_fn): z comes from the target network with no gradient (the
    reference stop-gradients it; this function does not detach), and the loss is symmetrised,
    byol_loss(p1, z2) + byol_loss(p2, z1) — the reference's mean of the per-image sum, i.e. this sum.
    """
    def normalise(x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().sum(dim=-1, keepdim=True).clamp_min(BYOL_NORM_EPS))

    return (normalise(p) - normalise(z)).square().sum(dim=-1).mean()


def moco_v3_loss(q: torch.Tensor, k: torch.Tensor, temperature: float, rank: int = 0) -> torch.Tensor:
    """MoCo v3's contrastive loss (Chen, Xie & He 2021, Algorithm 1), as facebookresearch/moco-v3
    moco/builder.py MoCo.contrastive_loss: q, k L2-normalised, logits = q·k_allᵀ / τ, the positive of query i at
    column N·rank + i, cross-entropy (mean over the N queries) × 2τ.

    q: (N, D) this process's predictions; k: (W·N, D) the momentum encoder's projections of every process in
    rank order (the caller gathers them with no gradient, as the reference's concat_all_gather; with one
    process k_all = k). The method symmetrises: moco_v3_loss(q1, k2_all) + moco_v3_loss(q2, k1_all).
    """
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    n = q.shape[0]
    if k.shape[0] < (rank + 1) * n:
        raise ValueError(f"moco_v3_loss: {k.shape[0]} keys cannot hold rank {rank}'s {n} positives")
    logits = q @ k.T / temperature
    labels = torch.arange(n, device=q.device) + n * rank
    return F.cross_entropy(logits, labels) * (2 * temperature)


def dino_loss(student_out: list[torch.Tensor], teacher_out: list[torch.Tensor], center: torch.Tensor,
              student_temp: float, teacher_temp: float) -> torch.Tensor:
    """DINO's loss (Caron et al. 2021, Eq. 1–3 and Algorithm 1), as facebookresearch/dino main_dino.py
    DINOLoss.forward: teacher targets softmax((t − center) / τ_t) (no gradient), student log_softmax(s / τ_s);
    for every teacher crop iq and every student crop v ≠ iq the cross-entropy −Σ P_t log P_s, mean over the
    batch; the sum over those pairs divided by their number.

    student_out: one (B, K) tensor per crop, the global crops first in the teacher's order (v == iq means the
    same view); teacher_out: one (B, K) tensor per global crop (the reference: 2). teacher_temp is this epoch's
    value (schedules.dino_teacher_temp). The centre update after the loss is `dino_center`, the method's call.
    """
    if not teacher_out or len(student_out) < len(teacher_out):
        raise ValueError(f"dino_loss: {len(teacher_out)} teacher crops need at least as many student crops "
                         f"({len(student_out)})")
    log_p_s = [F.log_softmax(s / student_temp, dim=-1) for s in student_out]
    total = student_out[0].new_zeros(())
    pairs = 0
    for iq, t in enumerate(teacher_out):
        p_t = F.softmax((t - center) / teacher_temp, dim=-1).detach()
        for v, log_p in enumerate(log_p_s):
            if v == iq:
                continue
            total = total + (-p_t * log_p).sum(dim=-1).mean()
            pairs += 1
    if pairs == 0:
        raise ValueError("dino_loss: no (teacher, other student crop) pair; give at least two crops")
    return total / pairs


@torch.no_grad()
def dino_center(center: torch.Tensor, teacher_out: torch.Tensor, momentum: float, *,
                batch_sum: torch.Tensor | None = None, world_size: int = 1) -> torch.Tensor:
    """DINO's centre update (Caron et al. 2021, Eq. 4), as facebookresearch/dino main_dino.py
    DINOLoss.update_center: c ← m·c + (1 − m)·mean of the teacher outputs; returns the new centre.

    teacher_out: (n, K), this process's teacher outputs of all global crops concatenated. One process: the mean
    of its rows. Several: the reference all-reduces the row sum, so the caller passes
    batch_sum = all_reduce(teacher_out.sum(0, keepdim=True)) and world_size, and the mean is
    batch_sum / (n · world_size) (every process holding n rows, as the reference assumes).
    """
    if batch_sum is None:
        if world_size != 1:
            raise ValueError("dino_center: with world_size > 1 pass the all-reduced batch_sum")
        batch_sum = teacher_out.sum(dim=0, keepdim=True)
    batch_center = batch_sum / (teacher_out.shape[0] * world_size)
    return center * momentum + batch_center * (1 - momentum)
