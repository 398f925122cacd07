"""Paper Eq. 1 and the App. B objectives on hand-computable inputs."""

import math

import pytest
import torch

from urrlkit.pretext.losses import info_nce, memory_infonce, nce_instdis, nce_normaliser


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


def test_nce_instdis_hand_computed() -> None:
    feat = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])  # K = 2
    t, z, n = 1.0, 10.0, 100
    p_pos = math.exp(1.0) / z
    p_negs = [math.exp(0.0) / z, math.exp(-1.0) / z]
    noise = 2 / n
    expected = -math.log(p_pos / (p_pos + noise)) - sum(math.log(noise / (p + noise)) for p in p_negs)
    assert nce_instdis(feat, pos, neg, t, z, n).item() == pytest.approx(expected, rel=1e-5)


def test_nce_normaliser_is_n_times_mean() -> None:
    feat = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[[0.0, 1.0], [-1.0, 0.0]]])
    assert nce_normaliser(feat, neg, 1.0, 50) == pytest.approx(50 * (1 + math.exp(-1)) / 2, rel=1e-6)


def test_memory_infonce_equals_info_nce_with_shared_negatives() -> None:
    g = torch.Generator().manual_seed(1)
    f = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=1)
    pos = torch.nn.functional.normalize(torch.randn(3, 4, generator=g), dim=1)
    neg = torch.nn.functional.normalize(torch.randn(5, 4, generator=g), dim=1)
    a = memory_infonce(f, pos, neg.expand(3, 5, 4), 0.1)
    b = info_nce(f, pos, neg.T, 0.1)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
