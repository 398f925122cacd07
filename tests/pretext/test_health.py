"""Representation health (pretext/health.py): each statistic exact on hand-computed inputs, the ring buffer of the
epoch's last rows, the two collapse warnings, no read-back per step, and the [monitor] fields."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from urrlkit.config import load
from urrlkit.engine.progress import StepOutput
from urrlkit.errors import UrrlError
from urrlkit.pretext.health import (
    RANKME_EPS,
    HealthMonitor,
    alignment,
    contrastive_chance,
    effective_rank,
    embedding_std,
    uniformity,
)
from urrlkit.pretext.losses import info_nce

ROOT = Path(__file__).resolve().parents[2]
E = torch.eye(3, dtype=torch.float64)


def _entropy_rank(p: list[float]) -> float:
    """exp(−Σ p log p) with RankMe's ε added to each p, by hand."""
    q = [x + RANKME_EPS for x in p]
    return math.exp(-sum(x * math.log(x) for x in q))


def test_embedding_std_of_plus_minus_unit_vectors() -> None:
    # Rows ±e1, ±e2 (scaled: the rows are normalised first): each column is (1, −1, 0, 0) in some order, mean
    # 0, unbiased variance 2 / 3.
    z = torch.tensor([[3.0, 0], [-1, 0], [0, 2], [0, -5]], dtype=torch.float64)
    assert embedding_std(z).item() == pytest.approx(math.sqrt(2 / 3), abs=1e-12)
    assert embedding_std(z).item() * math.sqrt(2) == pytest.approx(math.sqrt(4 / 3), abs=1e-12)  # the ratio


def test_embedding_std_is_zero_for_identical_rows() -> None:
    z = torch.tensor([[1.0, 2, 2]] * 4) * torch.tensor([[1.0], [2], [0.5], [3]])  # one direction, four lengths
    assert embedding_std(z).item() == pytest.approx(0.0, abs=1e-7)


def test_effective_rank_exact() -> None:
    assert effective_rank(torch.eye(4, dtype=torch.float64)).item() == pytest.approx(
        _entropy_rank([0.25] * 4), rel=1e-12)  # ≈ 4: orthonormal rows, equal singular values
    assert _entropy_rank([0.25] * 4) == pytest.approx(4.0, rel=1e-5)
    diag = torch.tensor([[3.0, 0], [0, 1]], dtype=torch.float64)  # σ = (3, 1): p = (3/4, 1/4)
    assert effective_rank(diag).item() == pytest.approx(_entropy_rank([0.75, 0.25]), rel=1e-12)
    collapsed = torch.tensor([[1.0, 2, 2]] * 5, dtype=torch.float64)  # rank one: σ = (3√5, 0, 0)
    assert effective_rank(collapsed).item() == pytest.approx(_entropy_rank([1.0, 0.0, 0.0]), rel=1e-9)
    assert effective_rank(collapsed).item() == pytest.approx(1.0, abs=1e-5)


def test_alignment_exact() -> None:
    z1 = torch.stack([E[0], E[1]])
    z2 = torch.stack([E[1] * 2, -E[1] * 3])  # pair 0 orthogonal (‖x − y‖² = 2), pair 1 antipodal (4)
    assert alignment(z1, z2).item() == pytest.approx(3.0, abs=1e-12)
    assert alignment(z1, z2, alpha=1).item() == pytest.approx((math.sqrt(2) + 2) / 2, abs=1e-12)
    assert alignment(z1, z1 * 5).item() == pytest.approx(0.0, abs=1e-12)


def test_uniformity_exact() -> None:
    assert uniformity(E * 4).item() == pytest.approx(-4.0, abs=1e-12)  # every pair at squared distance 2
    assert uniformity(E, t=1).item() == pytest.approx(-2.0, abs=1e-12)
    assert uniformity(torch.stack([E[0]] * 3)).item() == pytest.approx(0.0, abs=1e-12)  # collapse: log 1
    z = torch.stack([E[0], -E[0], E[1]])  # squared distances 4, 2, 2
    assert uniformity(z).item() == pytest.approx(math.log((math.exp(-8) + 2 * math.exp(-4)) / 3), abs=1e-12)


def test_chance_value_is_info_nce_of_indistinguishable_candidates() -> None:
    assert contrastive_chance(4097) == pytest.approx(8.318, abs=1e-3)  # lightly #1007's stuck MoCo loss
    q = torch.nn.functional.normalize(torch.ones(4, 8), dim=1)  # query, key and all 16 negatives alike
    assert info_nce(q, q, q[0:1].T.repeat(1, 16), temperature=0.2).item() == pytest.approx(
        contrastive_chance(17), abs=1e-6)
    with pytest.raises(ValueError):
        contrastive_chance(1)


def _step(rows: torch.Tensor, loss: float = 1.0) -> StepOutput:
    return StepOutput(loss=torch.tensor(loss), embeddings=(rows, rows + 100))


def _ids(n0: int, n: int) -> torch.Tensor:
    """n rows whose two columns both hold the image's number, n0, n0 + 1, …"""
    return torch.arange(n0, n0 + n, dtype=torch.float32)[:, None].repeat(1, 2)


def test_ring_buffer_keeps_the_last_rows_and_resets() -> None:
    m = HealthMonitor(5)
    assert m.rows() is None
    m.update(_step(_ids(0, 2)))
    r = m.rows()
    assert r is not None and r[0][:, 0].tolist() == [0, 1]
    for n0 in (2, 4):
        m.update(_step(_ids(n0, 2)))  # 6 images: the first one drops out
    r = m.rows()
    assert r is not None and r[0][:, 0].tolist() == [1, 2, 3, 4, 5] and r[1][:, 0].tolist() == [101, 102, 103, 104, 105]
    m.update(_step(_ids(6, 3)))  # wraps around the end of the buffer
    r = m.rows()
    assert r is not None and r[0][:, 0].tolist() == [4, 5, 6, 7, 8]
    m.update(_step(_ids(20, 7)))  # a batch larger than the buffer: its last 5 images
    r = m.rows()
    assert r is not None and r[0][:, 0].tolist() == [22, 23, 24, 25, 26]
    numbers, _ = m.epoch_end()
    assert set(numbers) == {"emb_std", "emb_std_ratio", "eff_rank", "align", "uniform"}
    assert m.rows() is None and m.epoch_end() == ({}, [])  # reset: nothing carries into the next epoch
    m.update(_step(_ids(30, 1)))
    r = m.rows()
    assert r is not None and r[0][:, 0].tolist() == [30]


def test_numbers_of_the_monitor_are_the_functions_on_its_rows() -> None:
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(40, 8, generator=g), torch.randn(40, 8, generator=g)
    m = HealthMonitor(32)
    for i in range(0, 40, 10):
        m.update(StepOutput(loss=torch.tensor(1.0), embeddings=(z1[i:i + 10], z2[i:i + 10])))
    numbers, warnings = m.epoch_end()
    a, b = z1[8:], z2[8:]
    std = (embedding_std(a) + embedding_std(b)).item() / 2
    assert numbers == pytest.approx({"emb_std": std, "emb_std_ratio": std * math.sqrt(8),
                                     "eff_rank": (effective_rank(a) + effective_rank(b)).item() / 2,
                                     "align": alignment(a, b).item(),
                                     "uniform": (uniformity(a) + uniformity(b)).item() / 2}, rel=1e-5)
    assert warnings == []


def test_collapse_warning_fires_on_collapsed_embeddings_only() -> None:
    g = torch.Generator().manual_seed(0)
    one = torch.randn(1, 128, generator=g)
    collapsed = one + 1e-4 * torch.randn(256, 128, generator=g)
    m = HealthMonitor(256)
    m.update(StepOutput(loss=torch.tensor(1.0), embeddings=(collapsed, collapsed.flip(0))))
    numbers, warnings = m.epoch_end()
    assert numbers["emb_std_ratio"] < 0.1 and numbers["eff_rank"] < 1.5
    assert len(warnings) == 1 and warnings[0].startswith("embeddings collapsed") and "optim.lr" in warnings[0]
    assert "predictor" in warnings[0] and "\n" not in warnings[0]
    healthy = torch.randn(256, 128, generator=g)
    m.update(StepOutput(loss=torch.tensor(1.0), embeddings=(healthy, healthy + 0.1)))
    numbers, warnings = m.epoch_end()
    assert numbers["emb_std_ratio"] == pytest.approx(1.0, abs=0.05) and warnings == []
    never = HealthMonitor(256, std_ratio_warn=0)
    never.update(StepOutput(loss=torch.tensor(1.0), embeddings=(collapsed, collapsed)))
    assert never.epoch_end()[1] == []


def _epoch(m: HealthMonitor, losses: list[float]) -> list[str]:
    for x in losses:
        m.update(StepOutput(loss=torch.tensor(x)))  # no embeddings: only the loss watch
    numbers, warnings = m.epoch_end()
    assert numbers == {}
    return warnings


def test_chance_warning_fires_on_a_loss_stuck_at_ln_k_only() -> None:
    chance = contrastive_chance(4097)
    m = HealthMonitor(16, chance_loss=chance)
    stuck = _epoch(m, [8.31, 8.32, 8.318, 8.33])
    assert len(stuck) == 1 and stuck[0].startswith("contrastive loss stuck at chance")
    assert "8.318" in stuck[0] and "temperature" in stuck[0] and "\n" not in stuck[0]
    assert _epoch(m, [8.32, 8.3, 7.9]) == []  # fell below chance during the epoch: learning
    assert _epoch(m, [9.5, 9.4]) == []  # far above chance is not "stuck at chance"
    assert _epoch(m, [8.32, float("nan")]) == []  # a NaN is the loop's NaN stop's to report
    assert _epoch(m, [8.32, 8.33]) != []  # the range is per epoch: the earlier epochs left nothing behind
    assert _epoch(HealthMonitor(16, chance_loss=chance, chance_tol=0.0005), [8.31, 8.32]) == []
    assert _epoch(HealthMonitor(16), [chance] * 3) == []  # no chance value: no check


def test_update_reads_nothing_back_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(6, 4, generator=g, requires_grad=True)
    z2 = torch.randn(6, 4, generator=g).bfloat16()
    loss = (z1 ** 2).sum()
    m = HealthMonitor(8, chance_loss=math.log(7))
    rng = torch.get_rng_state()

    def read_back(*args: object, **kwargs: object) -> None:
        raise AssertionError("a host read-back during update")

    with monkeypatch.context() as mp:
        for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__"):
            mp.setattr(torch.Tensor, name, read_back)
        m.update(StepOutput(loss=loss, embeddings=(z1, z2)))
        m.update(StepOutput(loss=loss, embeddings=(z1[:3], z2[:3])))
    assert torch.equal(torch.get_rng_state(), rng)  # draws nothing: the run's random streams are untouched
    r = m.rows()
    assert r is not None and r[0].dtype == r[1].dtype == torch.float32 and not r[0].requires_grad
    expected = torch.cat([z1[1:], z1[:3]]).detach()  # 9 rows into 8: the oldest one dropped
    with torch.no_grad():
        z1.mul_(0)  # the buffer holds copies, not views of the method's tensors
    assert torch.equal(r[0], expected) and torch.equal(r[1], torch.cat([z2[1:], z2[:3]]).float())
    assert m.epoch_end()[0]


def test_other_processes_record_nothing() -> None:
    m = HealthMonitor(8, chance_loss=math.log(7), main_process=False)
    m.update(StepOutput(loss=torch.tensor(math.log(7)), embeddings=(torch.ones(4, 3), torch.ones(4, 3))))
    assert m.rows() is None and m.epoch_end() == ({}, [])


def test_width_and_shape_are_checked() -> None:
    m = HealthMonitor(8)
    m.update(StepOutput(loss=torch.tensor(1.0), embeddings=(torch.ones(2, 3), torch.ones(2, 3))))
    with pytest.raises(ValueError, match="width"):
        m.update(StepOutput(loss=torch.tensor(1.0), embeddings=(torch.ones(2, 4), torch.ones(2, 4))))
    with pytest.raises(ValueError, match="one shape"):
        m.update(StepOutput(loss=torch.tensor(1.0), embeddings=(torch.ones(2, 3), torch.ones(3, 3))))
    with pytest.raises(ValueError):
        HealthMonitor(1)


def test_monitor_fields_defaults_and_bounds() -> None:
    r = load(ROOT / "recipes" / "paper" / "urrl.toml")
    assert (r.monitor.health, r.monitor.health_rows, r.monitor.health_std_ratio, r.monitor.health_chance_tol) == (
        True, 2048, 0.1, 0.01)
    assert not r.monitor.linear and not r.monitor.knn  # the probes that train stay off in the paper recipes
    assert load(ROOT / "recipes" / "quickstart.toml", ["monitor.health=false"]).monitor.health is False
    for bad in ("monitor.health_rows=15", "monitor.health_rows=8193", "monitor.health_std_ratio=1.0",
                "monitor.health_chance_tol=0", "monitor.health_chance_tol=0.6"):
        with pytest.raises(UrrlError):
            load(ROOT / "recipes" / "quickstart.toml", [bad])
