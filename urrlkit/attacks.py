"""Public API: the L2 attacks (`urrlkit.evaluate.attacks` is their home)."""

from urrlkit.evaluate.attacks import pgd_l2, project_l2, robust_accuracy

__all__ = ["pgd_l2", "project_l2", "robust_accuracy"]
