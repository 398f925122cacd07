"""Representation health during pretraining: four label-free statistics of the embeddings the method hands back
(StepOutput.embeddings), measured once per epoch on the last images of the epoch, and two collapse warnings.

- ``embedding_std``: the per-dimension std of the L2-normalised embeddings, averaged over dimensions — ≈ 1/√d
  for embeddings spread over the sphere, → 0 when every image maps to one vector (SimSiam, Chen & He 2021,
  §4.1 / Fig. 2; lightly-ai/lightly lightly/utils/debug.py ``std_of_l2_normalized``).
- ``effective_rank``: RankMe (Garrido et al. 2023, Eq. 1), exp of the entropy of the L1-normalised singular
  values; 1 for a rank-one (collapsed) matrix, up to min(N, d); it also sees dimensional collapse, which the
  std misses.
- ``alignment`` / ``uniformity``: Wang & Isola 2020 (SsnL/align_uniform ``align_loss`` / ``uniform_loss``),
  E‖x − y‖^α over positive pairs and log E exp(−t‖x − y‖²) over distinct pairs; lower is better for both.

Each single-view statistic is the mean over the two views, as solo-learn logs its ``train_z_std``
(vturrisi/solo-learn solo/methods/simsiam.py) and align_uniform's examples/stl10/main.py its uniformity.

``HealthMonitor`` keeps the epoch's last ``max_rows`` embedding pairs in a ring buffer on the device, written
with slice copies at host-known offsets, so a step costs two small device copies and no host sync (the loss
watch is a device-side min/max). Everything is read back at the epoch end only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from urrlkit.engine.progress import StepOutput

RANKME_EPS = 1e-7  # RankMe's ε of Eq. 1 (p_k = σ_k / ‖σ‖₁ + ε), the float32 value
# Below this the embeddings have collapsed, not merely narrowed: spread evenly over k of d dimensions, the
# ratio is √(k/d) (lightly's "collapse level" 1 − ratio), so 0.1 means ~1% of the dimensions (about one of 128).
# A healthy run never gets there; partial (dimensional) collapse is eff_rank's to show, not a warning's.
STD_RATIO_WARN = 0.1
CHANCE_TOL = 0.01  # fraction of ln K: lightly issue #1007's stuck loss 8.32 vs ln 4097 = 8.318 is within 0.03%


def _float(z: torch.Tensor) -> torch.Tensor:
    # Half precision has too few bits for std of ~1/√d values, SVD and pdist; float64 inputs stay float64.
    return z if z.dtype in (torch.float32, torch.float64) else z.float()


def embedding_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the per-dimension (unbiased) std of the L2-normalised rows of z (N ≥ 2, d):
    lightly's ``std_of_l2_normalized`` (SimSiam §4.1). ≈ 1/√d when the rows are spread over the sphere, 0 when
    they are all one direction. Divide by 1/√d for the scale-free ratio the monitor reports."""
    return F.normalize(_float(z), dim=1).std(dim=0).mean()


def effective_rank(z: torch.Tensor, eps: float = RANKME_EPS) -> torch.Tensor:
    """RankMe (Garrido et al. 2023, Eq. 1) of z (N, d): exp(−Σ_k p_k log p_k), p_k = σ_k / ‖σ‖₁ + ε over the
    min(N, d) singular values σ of z as it is (not centred, not normalised, as in the paper)."""
    s = torch.linalg.svdvals(_float(z))
    p = s / s.sum() + eps
    return torch.exp(-(p * p.log()).sum())


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2) -> torch.Tensor:
    """Wang & Isola 2020 ``align_loss`` on the L2-normalised rows: mean over i of ‖x_i − y_i‖^α, rows i of z1
    and z2 being two views of one image. 0 when the views coincide, 4 (α = 2) when they are antipodal."""
    x, y = F.normalize(_float(z1), dim=1), F.normalize(_float(z2), dim=1)
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2) -> torch.Tensor:
    """Wang & Isola 2020 ``uniform_loss`` on the L2-normalised rows: log of the mean of exp(−t‖x_i − x_j‖²)
    over the N(N − 1)/2 distinct pairs (torch.pdist). 0 when every row is the same vector (collapse); more
    negative is more uniform (−4 for orthonormal rows, t = 2)."""
    x = F.normalize(_float(z), dim=1)
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def contrastive_chance(candidates: int) -> float:
    """ln K: the softmax cross-entropy of a contrastive loss that cannot tell its positive from the other
    K − 1 candidates (all logits equal), e.g. K = queue_size + 1 for MoCo's InfoNCE, 2N − 1 for SimCLR's
    NT-Xent over a batch of N pairs. A loss that stays there has learnt nothing (lightly issue #1007: MoCo
    with a 4,096-key bank stuck at 8.32 = ln 4097)."""
    if candidates < 2:
        raise ValueError(f"a contrastive loss needs at least 2 candidates, got {candidates}")
    return math.log(candidates)


def collapse_warning(std_ratio: float, threshold: float, eff_rank: float, dim: int) -> str | None:
    """The one-line warning for embeddings whose emb_std_ratio is below `threshold`, or None."""
    if not std_ratio < threshold:
        return None
    return (f"embeddings collapsed: emb_std_ratio {std_ratio:.3f} < {threshold:g} (the per-dimension std of the "
            f"L2-normalised embeddings is {std_ratio:.1%} of 1/√{dim}; eff_rank {eff_rank:.1f} of {dim}): every "
            "image maps to nearly one direction; lower optim.lr, raise pretext.temperature if it is very low, "
            "and for a method without negatives (BYOL, SimSiam) check its predictor and stop-gradient")


def chance_warning(low: float, high: float, chance: float, tol: float) -> str | None:
    """The one-line warning for an epoch whose every step's loss lay within tol · ln K of ln K, or None."""
    if not (abs(low - chance) <= tol * chance and abs(high - chance) <= tol * chance):
        return None
    return (f"contrastive loss stuck at chance: every step of the epoch within {tol:.1%} of ln K = {chance:.3f} "
            f"(loss {low:.3f} to {high:.3f}): the positive scores no higher than the negatives; lower optim.lr, "
            "lower pretext.temperature if it is high, and check that the queue / memory bank is filled from the "
            "right encoder")


class HealthMonitor:
    """The representation-health monitor of pretraining.

    ``update(out)`` after every step, on every process: keeps the detached embeddings of ``out.embeddings`` in
    a ring buffer of the last ``max_rows`` images (both views, float32, on their device; allocated at the first
    step, whose width d it then requires) and the range of ``out.loss``. ``epoch_end()`` returns
    ``(numbers, warnings)`` — numbers {"emb_std", "emb_std_ratio", "eff_rank", "align", "uniform"} (empty
    before two rows are in), warnings one-line strings to print once — and resets for the next epoch.

    Several processes: only the main process records and measures, on its own rows; the others' ``update`` is
    a no-op and their ``epoch_end`` returns ({}, []). Every process sees its own uniform share of the data and
    the same weights, so the main's rows are a sample like any other; measuring on one process keeps the
    sample size, and with it the estimates (eff_rank ≤ min(N, d), uniformity's small-sample bias), the same
    at any process count, and needs no collective (nobody waits, as for the kNN monitor).

    ``chance_loss``: ln K of the method's contrastive loss (``contrastive_chance``), or None for a loss without
    one (InstDis's NCE, BYOL); the warning fires when every step of the epoch is within ``chance_tol`` · ln K
    of it. ``std_ratio_warn``: the collapse warning fires when emb_std_ratio is below it (0 = never).

    Nothing here changes training: the buffers hold detached copies, nothing draws random numbers, and the
    state is not checkpointed — after a mid-epoch resume the epoch's numbers cover the steps since the resume
    (the same rows once max_rows of them are in; the loss range only from the resume on)."""

    def __init__(self, max_rows: int, *, chance_loss: float | None = None, chance_tol: float = CHANCE_TOL,
                 std_ratio_warn: float = STD_RATIO_WARN, main_process: bool = True) -> None:
        if max_rows < 2:
            raise ValueError(f"max_rows must be at least 2, got {max_rows}")
        self.max_rows, self.chance, self.tol = max_rows, chance_loss, chance_tol
        self.std_ratio_warn, self.main = std_ratio_warn, main_process
        self._buf: tuple[torch.Tensor, torch.Tensor] | None = None
        self._next = 0  # host-side ring position and fill: known from the batch shape, never read back
        self._count = 0
        self._low: torch.Tensor | None = None
        self._high: torch.Tensor | None = None

    def update(self, out: StepOutput) -> None:
        """Records one step (no host sync: slice copies at host-known offsets and a device-side min / max)."""
        if not self.main:
            return
        with torch.no_grad():
            if out.embeddings is not None:
                self._record(*out.embeddings)
            if self.chance is not None:
                loss = out.loss.detach().float()
                self._low = loss.clone() if self._low is None else torch.minimum(self._low, loss)
                self._high = loss.clone() if self._high is None else torch.maximum(self._high, loss)

    def _record(self, z1: torch.Tensor, z2: torch.Tensor) -> None:
        if z1.ndim != 2 or z1.shape != z2.shape:
            raise ValueError(f"embeddings must be two (B, d) tensors of one shape, got {tuple(z1.shape)} and "
                             f"{tuple(z2.shape)}")
        if self._buf is None:
            shape = (self.max_rows, z1.shape[1])
            self._buf = (torch.empty(shape, dtype=torch.float32, device=z1.device),
                         torch.empty(shape, dtype=torch.float32, device=z1.device))
        if z1.shape[1] != self._buf[0].shape[1]:
            raise ValueError(f"embeddings of width {z1.shape[1]} after {self._buf[0].shape[1]}")
        n = min(z1.shape[0], self.max_rows)  # a batch larger than the buffer: its last rows are the last images
        first = min(n, self.max_rows - self._next)  # rows before the ring wraps
        for buf, z in zip(self._buf, (z1, z2), strict=True):
            z = z.detach()[z.shape[0] - n:]
            buf[self._next:self._next + first].copy_(z[:first])
            buf[:n - first].copy_(z[first:])
        self._next = (self._next + n) % self.max_rows
        self._count = min(self._count + n, self.max_rows)

    def rows(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The recorded rows of both views, oldest first (None before any)."""
        if self._buf is None or self._count == 0:
            return None
        if self._count < self.max_rows:
            return self._buf[0][:self._count], self._buf[1][:self._count]
        return self._buf[0].roll(-self._next, dims=0), self._buf[1].roll(-self._next, dims=0)

    @torch.no_grad()
    def epoch_end(self) -> tuple[dict[str, float], list[str]]:
        """The epoch's numbers and warnings (main process; ({}, []) on the others); resets."""
        numbers: dict[str, float] = {}
        warnings: list[str] = []
        rows = self.rows() if self._count >= 2 else None
        if rows is not None:
            numbers = health_numbers(*rows)
            w = collapse_warning(numbers["emb_std_ratio"], self.std_ratio_warn, numbers["eff_rank"],
                                 rows[0].shape[1])
            warnings += [w] if w else []
        if self.chance is not None and self._low is not None and self._high is not None:
            w = chance_warning(float(self._low), float(self._high), self.chance, self.tol)
            warnings += [w] if w else []
        self.reset()
        return numbers, warnings

    def reset(self) -> None:
        """Empties the buffer and the loss range (the buffer's memory is kept for the next epoch)."""
        self._next = self._count = 0
        self._low = self._high = None


def health_numbers(z1: torch.Tensor, z2: torch.Tensor) -> dict[str, float]:
    """The monitor's numbers for paired rows z1, z2 (N ≥ 2, d): each single-view statistic the mean over the
    two views, alignment over the pairs."""
    d = z1.shape[1]
    std = float(embedding_std(z1) + embedding_std(z2)) / 2
    return {"emb_std": std, "emb_std_ratio": std * math.sqrt(d),
            "eff_rank": float(effective_rank(z1) + effective_rank(z2)) / 2,
            "align": float(alignment(z1, z2)),
            "uniform": float(uniformity(z1) + uniformity(z2)) / 2}
