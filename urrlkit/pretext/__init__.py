"""Pretext tasks, registered by name in `urrlkit.registry.PRETEXTS`: moco_v2, instdis, pirl.

Each is an nn.Module built as `cls(encoder, pretext_cfg, num_samples)` whose
`forward(views, index) -> (loss, stats)` takes the sampler's views and the images' data set indices."""

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
