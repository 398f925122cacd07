"""The [monitor] section: online probes of representation quality during pretraining (pretext/probes.py) and
the representation-health monitor (pretext/health.py)."""

from __future__ import annotations

from pydantic import Field

from urrlkit.config.sections import Section


class MonitorConfig(Section):
    """The probes are off by default, so the paper recipes train exactly as before; the quickstart turns both
    on. Both need the training set's labels (a data set without them turns them off with one line). The health
    monitor is on: it only reads detached embeddings (no random draws, no collective, weights unchanged), and
    its epoch-end measurement takes 0.07 s at 2,048 rows × 128 dimensions on one CPU thread (docs/pretrain.md)."""

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
    # Representation health (pretext/health.py): measurement only, on detached embeddings the method returns.
    health: bool = Field(True, description="representation health per epoch from the last health_rows images' "
                         "embeddings: emb_std (its ratio to 1/√d), eff_rank (RankMe), align and uniform "
                         "(Wang & Isola), with a one-line warning on collapse or a loss stuck at chance")
    health_rows: int = Field(2048, ge=16, le=8192, description="images (embedding pairs) measured: the "
                             "epoch's last ones, kept on the device; the main process's own in a multi-process "
                             "launch")
    health_std_ratio: float = Field(0.1, ge=0, lt=1, description="warn when emb_std_ratio falls below it (the "
                                    "embeddings spread over ~ratio² of the dimensions); 0 = never")
    health_chance_tol: float = Field(0.01, gt=0, le=0.5, description="warn when every step's loss of an epoch is "
                                     "within this fraction of the method's chance value ln K (methods without "
                                     "one are not checked)")
