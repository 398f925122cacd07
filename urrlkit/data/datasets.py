"""Named data sets. Every one yields `(uint8 CHW tensor, int label)` at a fixed stored size, so batches
stack and augmentation runs batched on the device. Variable-size images are resized (shorter side) and
centre-cropped to the stored size on load — torchvision's Resize + CenterCrop — and random crops happen later,
per sample, in `urrlkit.augment`.

File-backed data sets (image files, torchvision's transfer sets) can also yield each image as decoded, at its
own size (`originals`): training crops are then drawn on the original image, as the reference pipelines draw
them (`urrlkit.augment.crops`).

Modules: base (the data set classes, decoding, `build`), arrays (npz, CIFAR, the bundled sample), files (image
folders, Tiny-ImageNet), torchvision_sets (the transfer sets). This module gathers them (and, importing them,
registers every built-in name)."""

import urrlkit.data.torchvision_sets  # noqa: F401  (registers the transfer sets by name)
from urrlkit.data.arrays import cifar10, cifar10_sample, cifar100, npz
from urrlkit.data.base import (
    SPLITS,
    ArrayDataset,
    DataRequest,
    FileDataset,
    TorchvisionDataset,
    build,
    center_offsets,
    check_arrays,
    dataset_labels,
    dataset_len,
    load_image,
    num_classes,
    originals,
    pil_to_uint8,
    resize_shorter,
    subset_indices,
)
from urrlkit.data.files import IMAGE_SUFFIXES, birdsnap, image_folder, imagefolder, imagenet, tiny_imagenet

__all__ = [
    "IMAGE_SUFFIXES",
    "SPLITS",
    "ArrayDataset",
    "DataRequest",
    "FileDataset",
    "TorchvisionDataset",
    "birdsnap",
    "build",
    "center_offsets",
    "check_arrays",
    "cifar10",
    "cifar10_sample",
    "cifar100",
    "dataset_labels",
    "dataset_len",
    "image_folder",
    "imagefolder",
    "imagenet",
    "load_image",
    "npz",
    "num_classes",
    "originals",
    "pil_to_uint8",
    "resize_shorter",
    "subset_indices",
    "tiny_imagenet",
]
