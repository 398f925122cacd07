"""urrlkit: unsupervised robust representation learning (URRL), similarity-regularized transfer and
robustness evaluation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from urrlkit.version import __version__

if TYPE_CHECKING:
    from torch import nn


def load_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Load a pretrained encoder (run dir, model dir, .safetensors file or Hub id); see `urrlkit.hub`."""
    from urrlkit.hub import load_backbone as _load

    return _load(name, **kwargs)


__all__ = ["__version__", "load_backbone"]
