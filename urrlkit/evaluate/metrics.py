"""Robustness and calibration metrics as plain functions (Hendrycks & Dietterich 2019; google-research/augmix
calibration_tools.py).

All functions take numpy arrays or tensors and return fractions in [0, 1] unless they say "%". Results files
store percentages (0–100).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from urrlkit.errors import UrrlError

# AlexNet errors on ImageNet-C, mean over the 5 severities (google-research/augmix imagenet.py).
ALEXNET_ERR: dict[str, float] = {
    "gaussian_noise": 0.886428,
    "shot_noise": 0.894468,
    "impulse_noise": 0.922640,
    "defocus_blur": 0.819880,
    "glass_blur": 0.826268,
    "motion_blur": 0.785948,
    "zoom_blur": 0.798360,
    "snow": 0.866816,
    "frost": 0.826572,
    "fog": 0.819324,
    "brightness": 0.564592,
    "contrast": 0.853204,
    "elastic_transform": 0.646056,
    "pixelate": 0.717840,
    "jpeg_compression": 0.606500,
    "speckle_noise": 0.845388,
    "gaussian_blur": 0.787108,
    "spatter": 0.717512,
    "saturate": 0.658248,
}
# AlexNet clean top-1 error on ImageNet (torchvision's AlexNet: 56.522 % top-1), the relative-mCE baseline.
ALEXNET_CLEAN_ERR = 1 - 0.56522

ArrayLike = Any


def _as_np(a: ArrayLike, dtype: Any = np.float64) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype).reshape(-1)


def _check(confidence: ArrayLike, correct: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    conf, corr = _as_np(confidence), _as_np(correct)
    if conf.shape != corr.shape:
        raise UrrlError(f"calibration: confidence has {conf.size} values but correct has {corr.size}")
    if conf.size == 0:
        raise UrrlError("calibration: no predictions given")
    return conf, corr


def adaptive_bins(n: int, bin_size: int) -> list[tuple[int, int]]:
    """[start, end) index ranges of the sorted predictions: n // bin_size bins of `bin_size`, the remainder
    joining the last bin; one bin with everything when n < bin_size."""
    if bin_size < 1:
        raise UrrlError(f"calibration: bin_size must be ≥ 1, got {bin_size}")
    k = n // bin_size
    if k == 0:
        return [(0, n)]
    bins = [(i * bin_size, (i + 1) * bin_size) for i in range(k)]
    bins[-1] = (bins[-1][0], n)
    return bins


def rms_calibration_error(
    confidence: ArrayLike, correct: ArrayLike, bin_size: int = 100, legacy: bool = False
) -> float:
    """RMS calibration error (Hendrycks et al., AugMix `calib_err` with p='2', β = bin_size).

    Predictions are sorted by confidence (stable sort: ties keep their input order), cut into bins of
    `bin_size` consecutive predictions with the remainder joining the last bin, and
    RMS = sqrt(Σ_b (|b|/n) · (mean conf_b − mean correct_b)²) over all bins. `legacy=True` reproduces the
    reference code, whose loop never scores its last bin (with n < bin_size it then scores nothing and this
    returns 0.0, where the reference raises IndexError). Returns a fraction in [0, 1].
    """
    conf, corr = _check(confidence, correct)
    order = np.argsort(conf, kind="stable")
    conf, corr = conf[order], corr[order]
    n = conf.size
    bins = adaptive_bins(n, bin_size)
    if legacy:
        bins = bins[:-1] if n >= bin_size else []
    total = 0.0
    for a, b in bins:
        diff = conf[a:b].mean() - corr[a:b].mean()
        total += (b - a) / n * diff**2
    return float(np.sqrt(total))


def reliability_diagram(
    confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15
) -> dict[str, list[float]]:
    """Equal-width confidence bins over [0, 1]: bin i holds confidences in (i/n, (i+1)/n] (bin 0 also
    holds 0).
    Returns `edges` (n_bins + 1), and per bin `count`, `confidence` (mean) and `accuracy` (mean; NaN when
    empty) — the data of a reliability diagram."""
    conf, corr = _check(confidence, correct)
    if n_bins < 1:
        raise UrrlError(f"calibration: n_bins must be ≥ 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    sconf = np.bincount(idx, weights=conf, minlength=n_bins)
    sacc = np.bincount(idx, weights=corr, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mconf = np.where(count > 0, sconf / np.maximum(count, 1), np.nan)
        macc = np.where(count > 0, sacc / np.maximum(count, 1), np.nan)
    return {
        "edges": edges.tolist(),
        "count": count.tolist(),
        "confidence": mconf.tolist(),
        "accuracy": macc.tolist(),
    }


def expected_calibration_error(confidence: ArrayLike, correct: ArrayLike, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): Σ_b (|b|/n)·|acc_b − conf_b| over `n_bins` equal-width bins (i/n, (i+1)/n];
    a fraction in [0, 1]."""
    d = reliability_diagram(confidence, correct, n_bins)
    n = sum(d["count"])
    return float(
        sum(
            c / n * abs(a - f)
            for c, a, f in zip(d["count"], d["accuracy"], d["confidence"], strict=True)
            if c > 0
        )
    )


def mean_corruption_error(
    errors: Mapping[str, Sequence[float]],
    baseline: str | Mapping[str, float] | None = "alexnet",
    clean_error: float | None = None,
    baseline_clean_error: float = ALEXNET_CLEAN_ERR,
) -> dict[str, Any]:
    """Corruption errors (Hendrycks & Dietterich 2019; AugMix `compute_mce`).

    `errors[c]` holds the error rates (fractions) of corruption c at each severity. With a baseline (default
    the AlexNet table `ALEXNET_ERR`, for ImageNet-C), CE_c = 100 · mean_s E_{c,s} / E^base_c and mCE is the
    mean of CE_c; with `baseline=None` (CIFAR-10/100-C), CE_c = 100 · mean_s E_{c,s}, i.e. the plain mean
    error. When `clean_error` is given, relative CE_c = 100 · (mean_s E_{c,s} − E_clean) / (E^base_c −
    E^base_clean) (plain mean of the differences without a baseline) and its mean, relative mCE.
    Returns {"ce": {c: %}, "mce": %, "relative_ce": {...} | None, "relative_mce": % | None}.
    """
    if not errors:
        raise UrrlError("mean_corruption_error: no corruption errors given")
    table: Mapping[str, float] | None
    if baseline is None:
        table = None
    elif isinstance(baseline, str):
        if baseline != "alexnet":
            raise UrrlError(f"mean_corruption_error: unknown baseline {baseline!r}; allowed: alexnet, None")
        table = ALEXNET_ERR
    else:
        table = baseline
    ce: dict[str, float] = {}
    rel: dict[str, float] = {}
    for name, errs in errors.items():
        e = _as_np(errs)
        if e.size == 0:
            raise UrrlError(f"mean_corruption_error: corruption {name!r} has no severities")
        mean = float(e.mean())
        if table is None:
            ce[name] = 100.0 * mean
            if clean_error is not None:
                rel[name] = 100.0 * (mean - clean_error)
        else:
            if name not in table:
                raise UrrlError(f"mean_corruption_error: no baseline error for corruption {name!r}")
            ce[name] = 100.0 * mean / table[name]
            if clean_error is not None:
                rel[name] = 100.0 * (mean - clean_error) / (table[name] - baseline_clean_error)
    return {
        "ce": ce,
        "mce": float(np.mean(list(ce.values()))),
        "relative_ce": rel if clean_error is not None else None,
        "relative_mce": float(np.mean(list(rel.values()))) if clean_error is not None else None,
    }


def top1(logits_or_pred: ArrayLike, labels: ArrayLike) -> float:
    """Top-1 accuracy (fraction) from logits (N, K) or predicted labels (N,)."""
    arr = (
        logits_or_pred.detach().cpu().numpy()
        if hasattr(logits_or_pred, "detach")
        else np.asarray(logits_or_pred)
    )
    pred = arr.argmax(-1) if arr.ndim == 2 else arr
    lab = _as_np(labels, np.int64)
    if pred.shape[0] != lab.shape[0]:
        raise UrrlError(f"top1: {pred.shape[0]} predictions but {lab.shape[0]} labels")
    return float((pred == lab).mean()) if lab.size else float("nan")


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
