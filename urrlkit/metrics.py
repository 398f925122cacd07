"""Public API: the robustness and calibration metrics (`urrlkit.evaluate.metrics` is their home)."""

from urrlkit.evaluate.metrics import (
    ALEXNET_CLEAN_ERR,
    ALEXNET_ERR,
    adaptive_bins,
    expected_calibration_error,
    mean_corruption_error,
    reliability_diagram,
    rms_calibration_error,
    top1,
)

__all__ = [
    "ALEXNET_CLEAN_ERR",
    "ALEXNET_ERR",
    "adaptive_bins",
    "expected_calibration_error",
    "mean_corruption_error",
    "reliability_diagram",
    "rms_calibration_error",
    "top1",
]
