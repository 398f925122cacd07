"""Transfer: task loss (Eq. 3) + regularizers (none, sim = Eq. 4, l2sp, adversarial), linear and full protocols."""

from urrlkit.finetune.regularizers import (
    build_objective,
    l2sp_penalty,
    similarity_matrix,
    similarity_regularization,
    task_loss,
)

__all__ = ["build_objective", "l2sp_penalty", "similarity_matrix", "similarity_regularization", "task_loss"]
