"""Public API: the robustness and calibration metrics (`urrlkit.evaluate.metrics` is their home). A star import
of its `__all__`, so this alias never falls behind a new metric."""

from urrlkit.evaluate.metrics import *  # noqa: F403
from urrlkit.evaluate.metrics import __all__ as __all__
