"""The [monitor] section: online probes of representation quality during pretraining (pretext/probes.py)."""

from __future__ import annotations

from pydantic import Field

from urrlkit.config.sections import Section


class MonitorConfig(Section):
    """Off by default, so the paper recipes train exactly as before; the quickstart turns both on. Both need
    the training set's labels (a data set without them turns them off with one line)."""

    linear: bool = Field(False, description="online linear probe on detached backbone features, trained beside "
                         "the pretext; its train top-1 per epoch is logged as probe_top1")
    linear_lr: float = Field(0.1, gt=0, description="the probe's lr at the start of the run (solo-learn's "
                             "classifier_lr), scaled by optim's schedule; weight decay 0")
    knn: bool = Field(False, description="weighted kNN top-1 of the test split at epoch ends (knn_top1)")
    knn_k: int = Field(200, ge=1, description="neighbours (InstDis: 200)")
    knn_temperature: float = Field(0.07, gt=0, description="τ of the exp(similarity / τ) votes")
    knn_every: int = Field(1, ge=1, description="epochs between kNN measurements; the last epoch always has one")
    knn_train_images: int = Field(10000, ge=0, description="training images the neighbours come from (a fixed "
                                  "random subset, eval preprocessing); 0 = all")
    knn_test_images: int = Field(5000, ge=0, description="test images classified (a fixed random subset); 0 = all")
