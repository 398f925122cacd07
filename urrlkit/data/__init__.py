"""Data sets by name (`urrlkit.registry.DATASETS`); on-disk layouts in `arrays.py`, `files.py`
and `torchvision_sets.py`, the data set classes and decoding in `base.py` (`datasets.py` gathers them).

The modules take plain values; `from_config` is the edge where a recipe's `[data]` section becomes them."""

from __future__ import annotations

from torch.utils.data import Dataset

from urrlkit.config import DataConfig
from urrlkit.data.datasets import (
    ArrayDataset,
    DataRequest,
    FileDataset,
    build,
    dataset_labels,
    dataset_len,
    image_folder,
    load_image,
    num_classes,
    originals,
)
from urrlkit.data.loading import load_split, split_train_val, to_tensors

__all__ = [
    "ArrayDataset",
    "DataRequest",
    "FileDataset",
    "build",
    "dataset_labels",
    "dataset_len",
    "from_config",
    "image_folder",
    "load_image",
    "load_split",
    "num_classes",
    "originals",
    "split_train_val",
    "to_tensors",
]


def from_config(cfg: DataConfig, split: str, dataset: str | None = None, size: int | None = None) -> Dataset:
    """The `split` of the recipe's data set (or of `dataset`, for a downstream set) at the stored size
    (`size`, else data.load_size or data.image_size), with data.train_limit / data.test_limit applied."""
    limit = cfg.train_limit if split == "train" else cfg.test_limit
    return load_split(dataset or cfg.dataset, split, size or cfg.stored_size, root=cfg.root, download=cfg.download,
                      limit=limit)
