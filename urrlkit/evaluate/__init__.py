"""Evaluation: clean top-1, calibration, L2-PGD robustness and common corruptions (see docs/evaluation.md)."""

from __future__ import annotations

from typing import Any


def evaluate_model(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See `urrlkit.evaluate.workflow.evaluate_model`."""
    from urrlkit.evaluate.workflow import evaluate_model as _ev

    return _ev(*args, **kwargs)


def run_eval(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """See `urrlkit.evaluate.workflow.run_eval`."""
    from urrlkit.evaluate.workflow import run_eval as _run

    return _run(*args, **kwargs)


__all__ = ["evaluate_model", "run_eval"]
