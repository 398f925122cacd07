"""Glue between a recipe's `[data]` section and data sets: build a split, carve a validation split,
and materialise small data sets as tensors."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from urrlkit.config import DataConfig
from urrlkit.data.datasets import ArrayDataset, DataRequest, build


def from_config(cfg: DataConfig, split: str, dataset: str | None = None, size: int | None = None) -> Dataset:
    """The `split` of the recipe's data set (or of `dataset`, for a downstream set) at the stored size."""
    limit = cfg.train_limit if split == "train" else cfg.test_limit
    req = DataRequest(root=cfg.root, split=split, size=size or cfg.stored_size, download=cfg.download,
                      limit=limit)
    return build(dataset or cfg.dataset, req)


def split_train_val(ds: Dataset, val_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """A fixed random split of the training set; hyperparameters are chosen on the second part, never on
    test."""
    n = len(ds)  # type: ignore[arg-type]
    n_val = round(n * val_fraction)
    if n_val == 0:
        return ds, None
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    train, val = Subset(ds, perm[n_val:]), Subset(ds, perm[:n_val])
    for sub in (train, val):
        sub.classes = ds.classes  # type: ignore[attr-defined]
    return train, val


def to_tensors(ds: Dataset, batch_size: int = 512, workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8 NCHW) and labels of a data set, in order."""
    if isinstance(ds, ArrayDataset):
        return ds.images, ds.labels
    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=batch_size, num_workers=workers):
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)
