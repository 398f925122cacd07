"""Linear evaluation (frozen encoder, linear head; main_lincls.py's protocol scaled by the recipe) and the
weighted kNN monitor (Wu et al. 2018)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from urrlkit.config import Recipe, ScheduleConfig
from urrlkit.data import dataset_len, from_config, num_classes
from urrlkit.engine.logging import console
from urrlkit.engine.schedule import lr_at
from urrlkit.evaluate.inputs import eval_inputs, eval_split, model_device  # the one eval preprocessing
from urrlkit.finetune.regularizers import task_loss
from urrlkit.models import Classifier, Encoder


class LinearProbe(Classifier):
    """A classifier whose encoder stays frozen and in eval mode (BN statistics untouched) while training."""

    def __init__(self, encoder: Encoder, num_classes: int) -> None:
        super().__init__(encoder, num_classes)
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> LinearProbe:
        super().train(mode)
        self.encoder.eval()
        return self


@torch.no_grad()
def extract_features(encoder: nn.Module, ds: Dataset, image_size: int, batch_size: int = 256,
                     device: torch.device | str = "cpu", workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every image (framed to image_size, no augmentation) and the labels, on the CPU. Holds the
    whole split: only for the kNN monitor and augment = "none"."""
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    for x, y in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        feats.append(encoder(eval_inputs(x, image_size, device)).float().cpu())
        labels.append(y)
    encoder.train(was_training)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def streaming_top1(model: nn.Module, ds: Dataset, image_size: int, batch_size: int = 256, workers: int = 0,
                   device: torch.device | str | None = None) -> float:
    """Top-1 (%) of a classifier over a data set, batch by batch on `device` (default: the model's), framed as
    the evaluation suites frame images; no whole-split tensor is built."""
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)  # summed on the device: no sync per batch
    n = 0
    for x, y in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        pred = model(eval_inputs(x, image_size, device)).argmax(1)
        correct += (pred == y.to(device, non_blocking=True)).sum()
        n += int(y.shape[0])
    model.train(was_training)
    return 100.0 * int(correct) / max(n, 1)


def knn_top1(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
             k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Weighted kNN top-1 (%) on cosine similarity, votes weighted by exp(sim/τ) (Wu et al. 2018)."""
    n_cls = int(max(train_y.max(), test_y.max())) + 1
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    k = min(k, train_f.shape[0])
    correct = 0
    for i in range(0, test_f.shape[0], chunk):
        sim, idx = (test_f[i:i + chunk] @ train_f.T).topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], n_cls).scatter_add_(1, train_y[idx], (sim / temperature).exp())
        correct += int((votes.argmax(1) == test_y[i:i + chunk]).sum())
    return 100.0 * correct / test_f.shape[0]


def train_head_on_features(feats: torch.Tensor, labels: torch.Tensor, n_cls: int, cfg: ScheduleConfig,
                           seed: int = 0) -> nn.Linear:
    """SGD on a linear head over fixed features with the recipe's schedule (the encoder is frozen, and without
    augmentation its features never change, so computing them once is exact)."""
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(feats.shape[1], n_cls)
    nn.init.normal_(head.weight, std=0.01, generator=g)
    nn.init.zeros_(head.bias)
    opt = torch.optim.SGD(head.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loader = DataLoader(TensorDataset(feats, labels), batch_size=cfg.batch_size, shuffle=True, generator=g)
    for epoch in range(cfg.epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg.lr, epoch, cfg.epochs, cfg.schedule, cfg.milestones)
        for f, y in loader:
            loss = task_loss(head(f), y)  # paper Eq. 3, on the frozen features
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return head


def run_linear_eval(recipe: Recipe, encoder: Encoder, out_dir: Path | None = None,
                    resume: bool = False) -> dict[str, float]:
    """Linear-evaluate `encoder` on the recipe's data set as MoCo's main_lincls.py does: a linear head on the
    frozen encoder (BN in eval mode), trained on the device through a streaming DataLoader with the recipe's
    augmentation and checkpoints (resume continues the probe); test top-1 streamed on the device. Training
    features are extracted only when the kNN monitor (knn_k > 0) or augment = "none" needs them. Saves the probe
    as a model directory and runs the recipe's eval suites on it.

    In a multi-process launch every process trains the probe (DDP over the launch's devices); the main process
    alone then evaluates and writes, and the others return an empty dict."""
    from accelerate import PartialState

    from urrlkit.hub import save_model

    cfg = recipe.linear_eval
    out_dir = out_dir or recipe.run_dir / "linear"
    from urrlkit.engine.lock import lock_run_dir

    lock_run_dir(out_dir)  # one writer (a standalone linear eval, e.g. the replica's, beside a running one)
    size, workers = recipe.data.image_size, recipe.data.workers
    state = PartialState()
    device = state.device
    train = from_config(recipe.data, "train")
    n_cls = num_classes(train)
    torch.manual_seed(recipe.run.seed)  # the head's initialisation is part of the run's seed
    probe: Classifier = LinearProbe(encoder.cpu().eval(), n_cls)
    if cfg.augment != "none":
        from urrlkit.finetune.train import train_classifier

        ckpts = out_dir / "checkpoints"
        resume = resume and (ckpts / "latest").is_file()
        if not resume and state.is_main_process:
            shutil.rmtree(ckpts, ignore_errors=True)  # a fresh probe must not inherit an old run's checkpoints
        probe = train_classifier(recipe, probe, train, cfg, ckpts, None, title="linear", resume=resume)
    if not state.is_main_process:
        return {}
    probe = probe.to(device).eval()
    train_feats = None
    if cfg.knn_k or cfg.augment == "none":
        train_feats = extract_features(probe.encoder, train, size, recipe.eval.batch_size, device, workers)
    if cfg.augment == "none":
        assert train_feats is not None
        # Without augmentation the frozen encoder's features never change: training on them once is exact.
        probe.head = train_head_on_features(*train_feats, n_cls, cfg, seed=recipe.run.seed).to(device)
    test = eval_split(recipe.data, "test")
    result: dict[str, float] = {}
    if cfg.knn_k:
        assert train_feats is not None
        test_feats = extract_features(probe.encoder, test, size, recipe.eval.batch_size, device, workers)
        result["knn_top1"] = knn_top1(*train_feats, *test_feats, k=cfg.knn_k)
    result["linear_top1"] = streaming_top1(probe, test, size, recipe.eval.batch_size, workers, device)
    save_model(probe, out_dir / "model", recipe, stage="linear_eval", classes=list(train.classes))  # type: ignore[attr-defined]
    (out_dir / "linear_eval.json").write_text(json.dumps(result, indent=2))
    console.print(f"linear evaluation on {recipe.data.dataset} ({dataset_len(test)} test images): "
                  + ", ".join(f"{k} {v:.2f}%" for k, v in result.items()), markup=False)
    _run_suites(recipe, probe, out_dir)
    return result


def _run_suites(recipe: Recipe, model: Classifier, out_dir: Path) -> None:
    """The recipe's eval suites on the trained classifier (clean / calibration / corruptions / adversarial)."""
    if not recipe.eval.suites:
        return
    from urrlkit.evaluate.workflow import evaluate_model

    evaluate_model(model, recipe, list(recipe.eval.suites), out_dir / "eval", name=str(out_dir / "model"))
