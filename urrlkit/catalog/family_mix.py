"""Paper Eq. 2, the family mix: T ~ {T_rob with probability p, T_rep with probability 1 − p}, without torch.

`family_weights(p)` is the one expansion of the paper's `p` (the recipe, the trainer and the model card all read
it); the draw itself, by inverse CDF over these weights, is urrlkit/augment/sampler.py `draw_families`.
"""

from __future__ import annotations

from collections.abc import Sequence

# The paper's T_rob (AugMix with all operations) and T_rep (MoCo v2's augmentation), as registered families.
T_ROB = "augmix_allop"
T_REP = "moco_v2"


def family_weights(p: float, t_rep: str = T_REP) -> list[tuple[str, float]]:
    """Paper Eq. 2: [(T_rob, p), (T_rep, 1 − p)]. T_rep is the method's own augmentation (MoCo v2's for the
    paper's URRL; a method declares its own, e.g. SimCLR's). p ∈ [0, 1] is the recipe's check (`pretext.p`), not
    this one's: the model card expands a recorded p even where the recipe no longer validates."""
    return [(T_ROB, float(p)), (t_rep, 1.0 - float(p))]


def family_probabilities(weights: Sequence[float]) -> list[float]:
    """The weights normalised to sum to 1 (each ≥ 0, not all zero): the probability that a view draws each family."""
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"family weights must be ≥ 0 and not all zero, got {list(weights)}")
    total = sum(weights)
    return [w / total for w in weights]
