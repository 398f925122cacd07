"""Recipes recorded by an older urrlkit (a run's recipe.toml, a model's config.json), read as the current schema.

Until urrlkit 0.2 [pretext] was one flat table of every method's fields (MoCo's queue_size beside PIRL's
jigsaw_grid), each method taking the ones its signature named. A recorded table therefore holds fields its
method never received; they are dropped here, so a run recorded then still resumes and its model's card and
evaluation still read its recipe. One default changed meaning: the memory-bank methods' `negatives`, unset, was
`queue_size`. Only recorded recipes go through this; a recipe a user writes is validated as written.
"""

from __future__ import annotations

import copy
from typing import Any

from urrlkit import registry

# The flat table's fields (urrlkit ≤ 0.1 PretextConfig) that are no method's own any more in a recorded recipe.
FLAT_FIELDS = {"queue_size", "momentum", "temperature", "head_hidden", "head_dim", "mlp", "bn_groups", "views",
               "pirl_lambda", "negatives", "bank_loss", "jigsaw_grid", "p", "families", "method"}


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of the recorded recipe `data` with a flat [pretext] reduced to the fields of the method it names."""
    out = copy.deepcopy(data)
    pre = out.get("pretext")
    if not isinstance(pre, dict):
        return out
    method = pre.get("method", "moco_v2")
    if not isinstance(method, str) or not registry.PRETEXTS.knows(method):
        return out
    fields = getattr(registry.PRETEXTS.get(method), "model_fields", {})
    if method in ("instdis", "pirl") and pre.get("negatives") is None and "queue_size" in pre:
        pre["negatives"] = pre["queue_size"]  # the flat table's default: negatives = queue_size
    extra = [k for k in pre if k not in fields and k in FLAT_FIELDS]
    for key in extra:
        del pre[key]
    return out
