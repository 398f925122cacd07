"""Data sets in plain values: build a split, carve a validation split, and materialise small data sets as
tensors. No recipe here: `urrlkit.data.from_config` turns a recipe's `[data]` section into these arguments."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from urrlkit.data.datasets import ArrayDataset, DataRequest, build, dataset_len


def load_split(dataset: str, split: str, size: int, root: Path | None = None, download: bool = False,
               limit: int | None = None) -> Dataset:
    """The `split` of the registered data set `dataset` at the stored `size` (shorter side resized, centre
    square), read from `root` (None: the data set's default place), downloaded first when `download`, cut to a
    fixed random subset (seed 0) of `limit` images when given."""
    return build(dataset, DataRequest(root=root, split=split, size=size, download=download, limit=limit))


def split_train_val(ds: Dataset, val_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """A fixed random split of the training set; hyperparameters are chosen on the second part, never on
    test."""
    n = dataset_len(ds)
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
