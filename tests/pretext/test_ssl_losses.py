"""SimCLR, BYOL, MoCo v3 and DINO losses against hand computations and loop re-statements of the references
(google-research/simclr objective.py, deepmind-research byol helpers.py, facebookresearch/moco-v3 builder.py,
facebookresearch/dino main_dino.py DINOLoss), and the EMA update."""

import math

import pytest
import torch
import torch.nn.functional as F

from urrlkit.pretext.ema import ema_update_, momentum_copy
from urrlkit.pretext.losses import byol_loss, dino_center, dino_loss, moco_v3_loss, nt_xent


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def nt_xent_loop(h1: torch.Tensor, h2: torch.Tensor, t: float) -> float:
    """Paper Algorithm 1: mean over the 2N anchors of −log exp(s_pos/τ) / Σ_{j≠k} exp(s_kj/τ)."""
    z = F.normalize(torch.cat([h1, h2]), dim=1)
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for k in range(n2):
        pos = (k + n) % n2
        num = math.exp(float(z[k] @ z[pos]) / t)
        den = sum(math.exp(float(z[k] @ z[j]) / t) for j in range(n2) if j != k)
        total += -math.log(num / den)
    return total / n2


def test_nt_xent_two_pairs_by_hand() -> None:
    # Normalised: view 1 = e1, e2; view 2 = e1, e3. Anchor e1 (either view): positive e1 (cos 1) among the
    # other three (cos 1, 0, 0) → −log(e^{1/τ} / (e^{1/τ} + 2)). Anchor e2: positive e3 (cos 0) among three
    # keys all at cos 0 → ln 3; anchor e3 likewise.
    z1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    z2 = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    t = 0.5
    a = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    expected = (2 * a + 2 * math.log(3)) / 4
    assert nt_xent(z1, z2, t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_equals_loop_over_2n_anchors() -> None:
    z1, z2 = randn(6, 5, seed=1), randn(6, 5, seed=2)
    assert nt_xent(z1, z2, 0.1).item() == pytest.approx(nt_xent_loop(z1, z2, 0.1), rel=1e-9)


def test_nt_xent_gathered_is_local_anchors_against_global_keys() -> None:
    """The reference's per-replica loss: local anchors vs all W·N keys, positive at rank·N + i. Each rank's
    value is the loop's mean over its own anchors only; the mean over ranks is the one-process loss of the
    concatenated batch, value and gradient (with a differentiable gather, as the TPU cross-replica concat)."""
    t, n, world = 0.2, 3, 2
    z1_all = randn(world * n, 4, seed=3).requires_grad_()
    z2_all = randn(world * n, 4, seed=4).requires_grad_()
    whole = F.normalize(torch.cat([z1_all, z2_all]), dim=1).detach()
    m = world * n
    per_rank = []
    for rank in range(world):
        rows = slice(rank * n, (rank + 1) * n)
        loss = nt_xent(z1_all[rows], z2_all[rows], t, z1_all, z2_all, rank=rank)
        anchors = [*range(rank * n, (rank + 1) * n), *range(m + rank * n, m + (rank + 1) * n)]
        terms = []
        for k in anchors:
            pos = (k + m) % (2 * m)
            den = sum(math.exp(float(whole[k] @ whole[j]) / t) for j in range(2 * m) if j != k)
            terms.append(-math.log(math.exp(float(whole[k] @ whole[pos]) / t) / den))
        assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-9)
        per_rank.append(loss)
    assert per_rank[0].item() != pytest.approx(per_rank[1].item())
    mean = torch.stack(per_rank).mean()
    single = nt_xent(z1_all, z2_all, t)
    assert mean.item() == pytest.approx(single.item(), rel=1e-12)
    g_mean = torch.autograd.grad(mean, [z1_all, z2_all])
    g_single = torch.autograd.grad(single, [z1_all, z2_all])
    for a, b in zip(g_mean, g_single, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_nt_xent_rejects_half_gathered_and_short_gathers() -> None:
    z = randn(2, 3)
    with pytest.raises(ValueError, match="both"):
        nt_xent(z, z, 0.1, z1_all=z)
    with pytest.raises(ValueError, match="rank 1"):
        nt_xent(z, z, 0.1, z, z, rank=1)


def test_byol_loss_is_two_minus_two_cos() -> None:
    p = torch.tensor([[1.0, 0.0], [2.0, 2.0]])
    z = torch.tensor([[0.0, 5.0], [1.0, 1.0]])
    # cos = 0 → 2; cos = 1 → 0; mean 1
    assert byol_loss(p, z).item() == pytest.approx(1.0, abs=1e-6)
    p, z = randn(5, 7, seed=5), randn(5, 7, seed=6)
    expected = (2 - 2 * F.cosine_similarity(p, z, dim=1)).mean()
    assert byol_loss(p, z).item() == pytest.approx(expected.item(), rel=1e-9)


def test_moco_v3_loss_by_hand_and_with_rank_offset() -> None:
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[0.0, 3.0], [0.5, 0.0]])  # rank 1 of 2, N = 1: its positive is row 1
    t = 0.2
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(0.0))) * 2 * t
    assert moco_v3_loss(q, k, t, rank=1).item() == pytest.approx(expected, rel=1e-6)
    q, k = randn(4, 6, seed=7), randn(8, 6, seed=8)
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    loop = sum(-F.log_softmax(qn[i] @ kn.T / t, dim=0)[4 + i] for i in range(4)) / 4 * 2 * t
    assert moco_v3_loss(q, k, t, rank=1).item() == pytest.approx(float(loop), rel=1e-9)
    with pytest.raises(ValueError, match="rank 2"):
        moco_v3_loss(q, k, t, rank=2)


def dino_reference(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, ncrops: int,
                   s_temp: float, t_temp: float) -> torch.Tensor:
    """DINOLoss.forward restated: concatenated outputs chunked into crops, teacher 2 global crops."""
    s_chunks = (student / s_temp).chunk(ncrops)
    t_chunks = F.softmax((teacher - center) / t_temp, dim=-1).detach().chunk(2)
    total, terms = 0.0, 0
    for iq, q in enumerate(t_chunks):
        for v in range(len(s_chunks)):
            if v == iq:
                continue
            total = total + torch.sum(-q * F.log_softmax(s_chunks[v], dim=-1), dim=-1).mean()
            terms += 1
    return total / terms


def test_dino_loss_by_hand() -> None:
    # K = 2, B = 1, two crops. Teacher crop 0 logits (0, 0) → P_t = (½, ½); teacher crop 1 logits (ln 3, 0)
    # with τ_t = 1, centre 0 → (¾, ¼). Student logits (0, 0) for both crops → log P_s = log ½.
    # Pairs (0, 1), (1, 0): each −Σ P_t log ½ = ln 2.
    s = [torch.zeros(1, 2), torch.zeros(1, 2)]
    t = [torch.zeros(1, 2), torch.tensor([[math.log(3), 0.0]])]
    assert dino_loss(s, t, torch.zeros(1, 2), 1.0, 1.0).item() == pytest.approx(math.log(2), rel=1e-6)
    # Student crop 1 logits (ln 3, 0) → log P_s = (ln ¾, ln ¼); pair (0, 1) = −(½ ln ¾ + ½ ln ¼), pair (1, 0) = ln 2.
    s = [torch.zeros(1, 2), torch.tensor([[math.log(3), 0.0]])]
    expected = (-(0.5 * math.log(0.75) + 0.5 * math.log(0.25)) + math.log(2)) / 2
    assert dino_loss(s, t, torch.zeros(1, 2), 1.0, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_dino_loss_equals_reference_with_multicrop() -> None:
    b, k, ncrops = 3, 10, 6
    student = randn(ncrops * b, k, seed=9).requires_grad_()
    teacher = randn(2 * b, k, seed=10)
    center = randn(1, k, seed=11)
    ours = dino_loss(list(student.chunk(ncrops)), list(teacher.chunk(2)), center, 0.1, 0.04)
    ref = dino_reference(student, teacher, center, ncrops, 0.1, 0.04)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(torch.autograd.grad(ours, student)[0], torch.autograd.grad(ref, student)[0])
    t_grad = teacher.clone().requires_grad_()
    dino_loss(list(student.chunk(ncrops)), list(t_grad.chunk(2)), center, 0.1, 0.04).backward()
    assert t_grad.grad is None  # the teacher targets are detached, as the reference's


def test_dino_center_local_and_reduced() -> None:
    center = torch.tensor([[1.0, 0.0]])
    out = torch.tensor([[2.0, 4.0], [0.0, 2.0]])  # mean (1, 3)
    new = dino_center(center, out, 0.9)
    torch.testing.assert_close(new, torch.tensor([[0.9 + 0.1, 0.3]]))
    # Two processes, the other holding rows summing to (6, 2): global mean ((2 + 6) / 4, (6 + 2) / 4) = (2, 2).
    reduced = out.sum(0, keepdim=True) + torch.tensor([[6.0, 2.0]])
    new = dino_center(center, out, 0.9, batch_sum=reduced, world_size=2)
    torch.testing.assert_close(new, torch.tensor([[0.9 + 0.2, 0.2]]))
    with pytest.raises(ValueError, match="batch_sum"):
        dino_center(center, out, 0.9, world_size=2)


def test_ema_update_matches_formula_and_moco_arithmetic() -> None:
    online = torch.nn.Linear(3, 2)
    target = momentum_copy(online)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    for a, b in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    before = [p.clone() for p in target.parameters()]
    ema_update_(target.parameters(), online.parameters(), 0.99)
    for t0, t1, o in zip(before, target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(t1, 0.99 * t0 + 0.01 * o, rtol=0, atol=1e-7)
    # m = 1 leaves the target, m = 0 copies the online tensors exactly.
    snap = [p.clone() for p in target.parameters()]
    ema_update_(target.parameters(), online.parameters(), 1.0)
    assert all(torch.equal(a, b) for a, b in zip(snap, target.parameters(), strict=True))
    ema_update_(target.parameters(), online.parameters(), 0.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters(), strict=True))
    with pytest.raises(ValueError, match="2 target tensors but 1"):
        ema_update_(target.parameters(), [online.weight], 0.5)


def test_ema_update_on_parameters_that_require_grad() -> None:
    t = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    o = torch.nn.Parameter(torch.tensor([3.0, 6.0]))
    ema_update_([t], [o], 0.5)
    assert torch.equal(t.detach(), torch.tensor([2.0, 4.0])) and t.grad_fn is None
