"""Data sets by name (`urrlkit.registry.DATASETS`); see `datasets.py` for the on-disk layouts."""

from urrlkit.data.datasets import (
    ArrayDataset,
    DataRequest,
    FileDataset,
    build,
    image_folder,
    load_image,
    num_classes,
    originals,
)
from urrlkit.data.loading import from_config, split_train_val, to_tensors

__all__ = [
    "ArrayDataset",
    "DataRequest",
    "FileDataset",
    "build",
    "from_config",
    "image_folder",
    "load_image",
    "num_classes",
    "originals",
    "split_train_val",
    "to_tensors",
]
