"""Paper Eq. 1 and the App. B objectives (InstDis / PIRL NCE, lemniscate's NCECriterion) on hand-computable
inputs, and the memory bank's momentum update."""

import math

import pytest
import torch

from urrlkit.pretext.common import MemoryBank
from urrlkit.pretext.losses import (
    NCE_EPS,
    bank_infonce,
    bank_scores,
    info_nce,
    memory_infonce,
    nce_instdis,
    nce_loss,
    nce_normaliser,
)


def test_info_nce_matches_hand_computation() -> None:
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[0.6, 0.8]])
    negatives = torch.tensor([[0.0, -1.0], [1.0, 0.0]])  # (D, K): two negatives (0,1) and (-1,0)
    t = 0.5
    # l_pos = 0.6, l_neg = [0, -1]
    expected = -math.log(math.exp(0.6 / t) / (math.exp(0.6 / t) + math.exp(0 / t) + math.exp(-1 / t)))
    assert info_nce(q, k, negatives, t).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_averages_over_batch_and_decreases_with_alignment() -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    neg = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=0)
    aligned = info_nce(q, q, neg, 0.2)
    random_k = info_nce(q, torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1), neg, 0.2)
    assert aligned < random_k
    per_row = torch.stack([info_nce(q[i:i + 1], q[i:i + 1], neg, 0.2) for i in range(4)])
    assert aligned.item() == pytest.approx(per_row.mean().item(), rel=1e-6)


def test_bank_scores_put_the_positive_first() -> None:
    feat = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[0.6, 0.8]])
    neg = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    assert bank_scores(feat, pos, neg).tolist() == [[pytest.approx(0.6), 0.0, -1.0]]


def test_nce_loss_hand_computed() -> None:
    # lemniscate NCECriterion: −[log P₀/(P₀ + K/n + ε) + Σ log (K/n)/(P_k + K/n + ε)], P = exp(s/τ)/Z.
    scores = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.2]], dtype=torch.float64)
    t, z, n = 0.5, 10.0, 100
    noise = 2 / n
    expected = 0.0
    for row in scores.tolist():
        p = [math.exp(s / t) / z for s in row]
        expected -= math.log(p[0] / (p[0] + noise + NCE_EPS))
        expected -= sum(math.log(noise / (q + noise + NCE_EPS)) for q in p[1:])
    assert nce_loss(scores, t, z, n).item() == pytest.approx(expected / 2, rel=1e-12)


def test_nce_instdis_is_nce_of_the_bank_scores() -> None:
    feat = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    pos = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    neg = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]], dtype=torch.float64)  # K = 2
    t, z, n = 1.0, 10.0, 100
    p_pos = math.exp(1.0) / z
    p_negs = [math.exp(0.0) / z, math.exp(-1.0) / z]
    noise = 2 / n
    expected = (-math.log(p_pos / (p_pos + noise + NCE_EPS))
                - sum(math.log(noise / (p + noise + NCE_EPS)) for p in p_negs))
    assert nce_instdis(feat, pos, neg, t, z, n).item() == pytest.approx(expected, rel=1e-12)


def test_nce_normaliser_is_n_times_the_mean_over_positive_and_noise() -> None:
    # lemniscate's NCEAverage: Z = mean(exp(out)) · n over the whole (B, K + 1) block, the positive included.
    scores = torch.tensor([[1.0, 0.0, -1.0]])
    assert nce_normaliser(scores, 1.0, 50) == pytest.approx(50 * (math.e + 1 + math.exp(-1)) / 3, rel=1e-6)
    assert nce_normaliser(scores, 0.5, 3) == pytest.approx(math.exp(2) + 1 + math.exp(-2), rel=1e-6)


def test_bank_infonce_hand_computed() -> None:
    scores = torch.tensor([[0.6, 0.0, -1.0]])
    t = 0.5
    expected = -math.log(math.exp(1.2) / (math.exp(1.2) + 1 + math.exp(-2)))
    assert bank_infonce(scores, t).item() == pytest.approx(expected, rel=1e-6)


def test_memory_infonce_equals_info_nce_with_shared_negatives() -> None:
    g = torch.Generator().manual_seed(1)
    f = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=1)
    pos = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=1)
    neg = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=1)
    a = memory_infonce(f, pos, neg.expand(3, 5, 4), 0.1)
    b = info_nce(f, pos, neg.T, 0.1)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_memory_bank_momentum_update_is_exact() -> None:
    # m ← normalise(0.5·m + 0.5·v) for the updated rows (lemniscate NCEFunction.backward); the rest untouched.
    bank = MemoryBank(4, 2, momentum=0.5)
    bank.bank.copy_(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]))
    bank.update(torch.tensor([1, 3]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    r = math.sqrt(0.8 ** 2 + 0.4 ** 2)  # 0.5·(0.6, 0.8) + 0.5·(1, 0) = (0.8, 0.4)
    s = math.sqrt(0.5)  # 0.5·(−1, 0) + 0.5·(0, 1) = (−0.5, 0.5)
    expected = torch.tensor([[1.0, 0.0], [0.8 / r, 0.4 / r], [0.0, 1.0], [-0.5 / s, 0.5 / s]])
    torch.testing.assert_close(bank.bank, expected, atol=1e-7, rtol=0)


def test_memory_bank_samples_uniformly() -> None:
    bank = MemoryBank(8, 4, momentum=0.5)
    rows = bank.sample(200, 40, torch.device("cpu"))  # 8,000 draws over 8 entries
    hits = (rows[..., None, :] == bank.bank).all(-1).float().sum((0, 1))
    assert hits.sum() == 8000 and (hits - 1000).abs().max() < 150
