"""Linear evaluation (frozen encoder, linear head; main_lincls.py's protocol scaled by the recipe) and the
weighted kNN monitor (Wu et al. 2018)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from urrlkit import metrics
from urrlkit.data import from_config, num_classes
from urrlkit.engine.logging import console
from urrlkit.engine.schedule import lr_at
from urrlkit.models import Classifier, Encoder
from urrlkit.recipe import Recipe, ScheduleConfig


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
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every image (resized/centre-cropped to image_size, no augmentation) and the labels."""
    from urrlkit.augment import supervised_transform

    to_input = supervised_transform("none", image_size=image_size, train=False)
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    for x, y in DataLoader(ds, batch_size=batch_size):
        feats.append(encoder(to_input(x.to(device), None)).float().cpu())
        labels.append(y)
    encoder.train(was_training)
    return torch.cat(feats), torch.cat(labels)


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
            loss = F.cross_entropy(head(f), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return head


def run_linear_eval(recipe: Recipe, encoder: Encoder, out_dir: Path | None = None) -> dict[str, float]:
    """Linear-evaluate `encoder` on the recipe's data set (train → fit head, test → report); save the probe as a
    model directory and run the recipe's eval suites on it."""
    from urrlkit.hub import save_model

    cfg = recipe.linear_eval
    out_dir = out_dir or recipe.run_dir / "linear"
    train, test = from_config(recipe.data, "train"), from_config(recipe.data, "test")
    n_cls = num_classes(train)
    encoder = encoder.cpu().eval()
    probe = LinearProbe(encoder, n_cls)
    tr_f, tr_y = extract_features(encoder, train, recipe.data.image_size)
    te_f, te_y = extract_features(encoder, test, recipe.data.image_size)
    result: dict[str, float] = {}
    if cfg.knn_k:
        result["knn_top1"] = knn_top1(tr_f, tr_y, te_f, te_y, k=cfg.knn_k)
    if cfg.augment == "none":
        probe.head = train_head_on_features(tr_f, tr_y, n_cls, cfg, seed=recipe.run.seed)
    else:
        from urrlkit.finetune.runner import train_classifier

        probe = train_classifier(recipe, probe, train, cfg, out_dir / "checkpoints", title="linear")
    with torch.no_grad():
        result["linear_top1"] = 100.0 * metrics.top1(probe.head(te_f), te_y)
    save_model(probe, out_dir / "model", recipe, stage="linear_eval", classes=list(train.classes))
    (out_dir / "linear_eval.json").write_text(json.dumps(result, indent=2))
    console.print(f"linear evaluation on {recipe.data.dataset} ({len(te_y)} test images): "
                  + ", ".join(f"{k} {v:.2f}%" for k, v in result.items()), markup=False)
    _run_suites(recipe, probe, out_dir)
    return result


def _run_suites(recipe: Recipe, model: Classifier, out_dir: Path) -> None:
    """The recipe's eval suites on the trained classifier (clean / calibration / corruptions / adversarial)."""
    if not recipe.eval.suites:
        return
    from urrlkit.evaluate.suites import evaluate_model

    evaluate_model(model, recipe, list(recipe.eval.suites), out_dir / "eval", name=str(out_dir / "model"))
