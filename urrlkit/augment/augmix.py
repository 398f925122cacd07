"""Batched AugMix (``augment_and_mix`` of google-research/augmix, Hendrycks et al. 2020) with per-sample parameters.

Per image: ``width`` chains, each of depth d ~ U{1, 2, 3} (or a fixed depth), each step an op drawn uniformly
from the op list with level ~ U(0.1, severity) and a random sign; w ~ Dirichlet(1, …, 1), m ~ Beta(1, 1);
``out = (1 − m)·x + m·Σ_i w_i·chain_i(x)``.

All chains of all images form one (width·B) batch; at every depth step the samples are grouped by the op
they drew, so each op runs once per step on its group — no Python loop over images.

Mixing happens in [0, 1] pixel space. The reference mixes after ``Normalize``, which is affine per channel;
since (1 − m) + m·Σ w_i = 1 the two are identical up to float rounding, and the model normalises inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from urrlkit.augment import rand
from urrlkit.augment.augmix_ops import Op
from urrlkit.augment.groups import copy_rows_, group_rows


@dataclass
class AugMixParams:
    """Everything AugMix draws for n images (chains are chain-major: index c·n + i)."""

    depth: Tensor  # (width·n,) int64, 1…3
    op: Tensor  # (max_depth, width·n) int64 index into the op list; ignored beyond `depth`
    level: Tensor  # (max_depth, width·n) float32 in [0.1, severity]
    sign: Tensor  # (max_depth, width·n) ±1
    weights: Tensor  # (n, width) Dirichlet(1, …, 1)
    m: Tensor  # (n,) Beta(1, 1)

    @property
    def width(self) -> int:
        return self.weights.shape[1]


def sample_params(n: int, n_ops: int, g: torch.Generator, severity: float = 3.0, width: int = 3,
                  depth: int = -1) -> AugMixParams:
    """Draw AugMix parameters for n images (depth ≤ 0 means U{1, 2, 3} per chain, as the reference)."""
    chains = width * n
    max_depth = depth if depth > 0 else 3
    depths = torch.full((chains,), depth, device=g.device) if depth > 0 else rand.randint(chains, 1, 4, g)
    op = rand.randint(max_depth * chains, 0, n_ops, g).view(max_depth, chains)
    level = rand.uniform(max_depth * chains, 0.1, severity, g).view(max_depth, chains)
    sign = rand.sign(max_depth * chains, g).view(max_depth, chains)
    weights = rand.dirichlet_ones(n, width, g)
    m = torch.rand(n, generator=g, device=g.device)  # Beta(1, 1) is U(0, 1)
    return AugMixParams(depths, op, level, sign, weights, m)


def run_chains(x255: Tensor, p: AugMixParams, ops: list[Op], g: torch.Generator) -> Tensor:
    """Apply every chain to its image; x255 (n, 3, H, W) holds the 8-bit grid. Returns (width, n, 3, H, W)."""
    n = x255.shape[0]
    chains = x255.new_empty((p.width * n, *x255.shape[1:]))
    # Inactive chains (depth ≤ step) get the out-of-range op id and join no group.
    steps = torch.arange(p.op.shape[0], device=p.op.device).unsqueeze(1)
    op_ids = torch.where(p.depth.unsqueeze(0) > steps, p.op, len(ops))
    for step, groups in enumerate(group_rows(op_ids, len(ops))):
        for k, idx in groups:
            # Every chain has depth ≥ 1, so step 0 fills all of `chains` straight from x: no width-fold copy.
            src = x255.index_select(0, idx % n) if step == 0 else chains.index_select(0, idx)
            copy_rows_(chains, idx, ops[k](src, p.level[step, idx], p.sign[step, idx], g))
    return chains.view(p.width, n, *x255.shape[1:])


def mix(x01: Tensor, chains255: Tensor, p: AugMixParams) -> Tensor:
    """(1 − m)·x + m·Σ_i w_i·chain_i, in [0, 1]."""
    m = p.m.view(-1, 1, 1, 1)
    coef = (p.weights.t() * p.m / 255).view(p.width, -1, 1, 1, 1)  # m·w_i, with the 1/255 folded in
    out = x01 * (1 - m)
    for i in range(p.width):
        out.addcmul_(chains255[i], coef[i])
    return out.clamp_(0, 1)


def augment_and_mix(x01: Tensor, ops: list[Op], g: torch.Generator, severity: float = 3.0, width: int = 3,
                    depth: int = -1) -> Tensor:
    """AugMix of a float [0, 1] batch, every image with its own chains, levels and mixing weights."""
    p = sample_params(x01.shape[0], len(ops), g, severity, width, depth)
    x255 = (x01 * 255).round_()  # chains read 8-bit pixels, as PIL images in the reference
    return mix(x01, run_chains(x255, p, ops, g), p)
