"""Online monitors of representation quality during pretraining, logged once per epoch: a linear probe trained
alongside the pretext on detached backbone features, and a weighted kNN classifier on a bounded number of
train / test images (eval preprocessing, no augmentation) at the end of an epoch. They show how good the
representation is without a separate linear-evaluation run; neither changes the encoder's training.

Following vturrisi/solo-learn solo/methods/base.py (the online classifier: nn.Linear on ``feat.detach()``, its
own parameter group with ``classifier_lr`` and weight decay 0, its cross-entropy added to the loss) and
solo/utils/knn.py (WeightedKNNClassifier: cosine similarity, top-k neighbours, votes weighted by exp(sim / T)),
with InstDis's kNN settings k = 200, T = 0.07 (zhirongw/lemniscate.pytorch main.py: ``kNN(…, 200,
args.nce_t)``). The kNN classifier is finetune/linear.py ``knn_top1``, its one home.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from urrlkit.engine.progress import Progress, StepOutput
from urrlkit.errors import UrrlError
from urrlkit.pretext.common import distributed, stream_seed
from urrlkit.pretext.health import HealthMonitor


def new_probe(feature_dim: int, classes: int, seed: int) -> nn.Linear:
    """nn.Linear(feature_dim, classes), weights N(0, 0.01) and zero bias (MoCo's main_lincls.py), drawn from
    its own generator seeded from run.seed: building it draws nothing from the global stream, so the rest of
    the run (pretext, views, shuffles) draws exactly what it draws with the probe off."""
    probe = nn.utils.skip_init(nn.Linear, feature_dim, classes)  # no default init: it would use the global RNG
    g = torch.Generator().manual_seed(stream_seed(seed, "online-probe"))
    with torch.no_grad():
        probe.weight.copy_(torch.randn(classes, feature_dim, generator=g) * 0.01)
        probe.bias.zero_()
    return probe


class ProbedPretext(nn.Module):
    """A pretext model (pretext/model.py PretextModel) with an online linear probe beside it (solo-learn's online
    classifier).

    ``forward(views, index, progress)`` runs the method, takes the backbone features of views[0] that its
    `StepOutput.features` carries (computed by the method's own forward: no extra pass, no hook), detaches them
    and trains the probe on the labels looked up by index. The returned loss has the method's value exactly and
    the probe's gradient: the probe's cross-entropy enters as ``ce - ce.detach()`` (= 0), so the logged "loss"
    stays the method's and, the features being detached, the encoder's gradient is unchanged.

    The running top-1 of the epoch is counted on the device in two per-process tensors, ``correct`` and
    ``seen``, which the training loop checkpoints (fit's extra_state) so that a resumed epoch counts on."""

    def __init__(self, pretext: nn.Module, probe: nn.Linear, labels: torch.Tensor,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.pretext = pretext
        self.probe = probe
        # Plain tensors, not buffers: DDP would broadcast buffers from rank 0 every step (and overwrite each
        # process's own counts); the labels are data, not state.
        self.labels = labels.to(device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.seen = torch.zeros((), dtype=torch.long, device=device)

    @property
    def encoder(self) -> nn.Module:
        return self.pretext.encoder  # type: ignore[return-value]

    def forward(self, views: list[torch.Tensor], index: torch.Tensor, progress: Progress | None = None
                ) -> StepOutput:
        out: StepOutput = self.pretext(views, index, progress)
        if out.features is None:
            raise UrrlError(f"{type(self.pretext).__name__}: the method returns no features, which the online "
                            "probe (monitor.linear) trains on; set monitor.linear = false")
        logits = self.probe(out.features.detach().float())
        y = self.labels[index]
        ce = F.cross_entropy(logits.float(), y)
        with torch.no_grad():
            self.correct += (logits.argmax(1) == y).sum()
            self.seen += y.shape[0]
        # A tensor, read back by the loop on log steps only (no host sync per step); the top-1 is per epoch.
        return replace(out, loss=out.loss + (ce - ce.detach()), stats={**out.stats, "probe_loss": ce.detach()})

    def after_step(self, progress: Progress) -> None:
        self.pretext.after_step(progress)  # type: ignore[operator]

    def epoch_top1(self) -> float:
        """The epoch's train top-1 (%) of the probe over every process (one all-reduce); resets the counts."""
        counts = torch.stack([self.correct, self.seen])
        if distributed():
            dist.all_reduce(counts)
        self.correct.zero_()
        self.seen.zero_()
        return float(running_top1(counts[0], counts[1]))


def running_top1(correct: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """100 · correct / seen (0 before any image is seen)."""
    return 100.0 * correct.double() / seen.clamp(min=1).double()


def probe_param_groups(pretext_params: list[nn.Parameter], probe: nn.Linear, lr: float,
                       probe_lr: float) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: the pretext's as before, then the probe's with weight decay 0 and
    ``lr_scale`` = probe_lr / lr, so the loop's schedule (group lr = lr(epoch) · lr_scale) brings the probe from
    probe_lr down as it brings the pretext from lr (solo-learn: classifier_lr, weight_decay 0, same scheduler).
    Under LARS the probe is not layer-adapted ("always_adapt" False): the trust ratio scales a step by
    0.001·‖w‖/‖g‖, which keeps a linear probe started near 0 at chance for the whole run."""
    return [{"params": pretext_params},
            {"params": list(probe.parameters()), "weight_decay": 0.0, "lr_scale": probe_lr / lr,
             "always_adapt": False}]


def monitor_subset(ds: Dataset, limit: int) -> Dataset:
    """At most `limit` images of `ds`: a fixed random subset in data-set order (data sets sorted by class would
    give a few classes from their first images), the same as data.train_limit / test_limit pick."""
    from urrlkit.data.base import dataset_len, subset_indices

    n = dataset_len(ds)
    return ds if limit <= 0 or limit >= n else Subset(ds, subset_indices(n, limit))


def knn_monitor(encoder: nn.Module, train: Dataset, test: Dataset, image_size: int, k: int, temperature: float,
                batch_size: int, device: torch.device | str, workers: int = 0) -> float:
    """Weighted kNN top-1 (%) of the encoder's features: `test` classified by its k nearest `train` images
    (cosine, votes exp(sim / T)); images framed as evaluation frames them, the encoder in eval mode (BN
    statistics untouched) and the global random streams restored afterwards (the DataLoader draws a seed from
    them), so monitoring changes nothing in the training run."""
    from urrlkit.finetune.linear import extract_features, knn_top1

    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        train_f = extract_features(encoder, train, image_size, batch_size, device, workers)
        test_f = extract_features(encoder, test, image_size, batch_size, device, workers)
    return knn_top1(*train_f, *test_f, k=k, temperature=temperature)


def knn_due(epoch: int, every: int, epochs: int) -> bool:
    """Whether the kNN monitor runs after (0-based) `epoch`: every `every` epochs, and always after the last."""
    return (epoch + 1) % every == 0 or epoch + 1 == epochs


class EpochMonitor:
    """The epoch-end hook of pretraining (engine/loop.py fit's ``on_epoch_end``): the probe's epoch top-1 (every
    process takes part in its all-reduce), when due the kNN top-1 — computed by the main process alone on its own
    features (the other processes return without it and wait for it at the epoch-end checkpoint's barrier, or at
    their next collective) — and the representation-health numbers (pretext/health.py, main process), whose
    collapse warnings go to `warn`, one line each."""

    def __init__(self, probe: ProbedPretext | None, knn: Callable[[], float] | None, every: int, epochs: int,
                 main_process: bool, health: HealthMonitor | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.probe, self.knn, self.every, self.epochs, self.main = probe, knn, every, epochs, main_process
        self.health, self.warn = health, warn

    def __call__(self, epoch: int) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.probe is not None:
            out["probe_top1"] = self.probe.epoch_top1()
        if self.knn is not None and self.main and knn_due(epoch, self.every, self.epochs):
            out["knn_top1"] = self.knn()
        if self.health is not None:
            numbers, warnings = self.health.epoch_end()
            out.update(numbers)
            for line in warnings:
                if self.warn is not None:
                    self.warn(f"warning: pretrain epoch {epoch}: {line}")
        return out
