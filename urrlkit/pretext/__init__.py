"""Pretext tasks, registered by name in `urrlkit.registry.PRETEXTS`: moco_v2, instdis, pirl.

Each is an nn.Module built from plain keyword values, `cls(encoder, *, num_samples, …)` (a registered one
receives those of dim, hidden_dim, mlp, queue_size, momentum, temperature, bn_groups, negatives, bank_loss,
jigsaw_grid, pirl_lambda, num_samples, seed, processes that its signature names; pretext/train.py build_pretext
turns the recipe into them), whose `forward(views, index) -> (loss, stats)` takes the sampler's views and the
images' data set indices."""

from urrlkit.pretext import instdis, moco, pirl
from urrlkit.pretext.losses import (
    bank_infonce,
    bank_scores,
    info_nce,
    memory_infonce,
    nce_instdis,
    nce_loss,
    nce_normaliser,
)

__all__ = ["bank_infonce", "bank_scores", "info_nce", "instdis", "memory_infonce", "moco", "nce_instdis",
           "nce_loss", "nce_normaliser", "pirl"]
