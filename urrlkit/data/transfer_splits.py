"""The transfer sets' train/test splits as Salman et al. (2020) train and test them (the URRL paper's Table 2
protocol; microsoft/robust-models-transfer, src/utils/transfer_datasets.py, caltech.py, dtd.py, constants.py):

- Caltech-101 / Caltech-256: the first 30 / 60 images of every class in file order (image_0001 … of each
  category folder, the order their Caltech classes and torchvision's share) train, all the others test
  (make_loaders_caltech101/256; their seeds are set but nothing is drawn). 3,030 / 5,647 and 15,420 / 15,187
  images on the full sets.
- SUN397: partition 1 of the official ten (Training_01.txt / Testing_01.txt, 50 + 50 images per class,
  19,850 / 19,850); their SUN_PATH is SUN397/splits_01.
- DTD: train1 + val1 for training, test1 for testing (dtd.DTD(train=True) reads train1.txt and val1.txt),
  3,760 / 1,880.
- Flowers-102: the official train + val for training, test for testing (2,040 / 6,149), the counts of Salman et
  al.'s data set table (after Kornblith et al. 2019); their code reads a prepared train/ and test/ folder.

Aircraft (trainval / test), Cars, Food-101, Pets and STL-10 already use the official splits that code uses.
These are pure index computations over torchvision's data sets (torchvision_sets.py registers them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from urrlkit.data.base import dataset_labels
from urrlkit.errors import DataError

CALTECH101_TRAIN_PER_CLASS = 30
CALTECH256_TRAIN_PER_CLASS = 60
SUN397_PARTITION = 1
# Where the SUN397 partition files may be: beside ClassName.txt, or in the folder Partitions.zip unpacks to.
SUN397_PARTITION_DIRS = (".", "Partitions")


def first_per_class(labels: Sequence[int], n: int) -> tuple[list[int], list[int]]:
    """(train, test) indices: the first `n` images of each class in data-set order, and all the others (in order).
    A class with ≤ n images is all train (Caltech-101's smallest class has 31 images, Caltech-256's 80)."""
    seen: dict[int, int] = {}
    train: list[int] = []
    test: list[int] = []
    for i, y in enumerate(labels):
        k = seen.get(int(y), 0)
        (train if k < n else test).append(i)
        seen[int(y)] = k + 1
    return train, test


def per_class_split(ds: Dataset, n: int, split: str) -> Dataset:
    """The `split` ("train": the first `n` per class; "test": the rest) of `ds` as a Subset keeping its class
    names."""
    labels = dataset_labels(ds)
    if labels is None:
        raise DataError(f"{type(ds).__name__}: no labels to split per class")
    train, test = first_per_class(labels.tolist(), n)
    return keep_classes(Subset(ds, train if split == "train" else test), ds)


def keep_classes(sub: Dataset, ds: Dataset) -> Dataset:
    for attr in ("classes", "categories"):
        if hasattr(ds, attr):
            setattr(sub, attr, getattr(ds, attr))
    return sub


def partition_file(data_dir: Path, split: str, partition: int = SUN397_PARTITION) -> Path:
    """SUN397's Training_NN.txt / Testing_NN.txt (NN = the partition) under `data_dir` (the SUN397 folder); a
    one-line DataError naming where it was looked for when absent (torchvision's download does not fetch them)."""
    name = f"{'Training' if split == 'train' else 'Testing'}_{partition:02d}.txt"
    for sub in SUN397_PARTITION_DIRS:
        path = data_dir / sub / name
        if path.is_file():
            return path
    where = " or ".join(str(data_dir / sub / name) for sub in SUN397_PARTITION_DIRS)
    raise DataError(f"data set 'sun397': partition {partition} needs {where} (Partitions.zip of the SUN397 "
                    "site); 'sun397-random80' needs no partition file")


def listed_indices(files: Sequence[Path], data_dir: Path, listing: Path) -> list[int]:
    """Indices into `files` of the images `listing` names, in its order; each line is a path relative to
    `data_dir` with a leading '/' ("/a/abbey/sun_aaalbzqrimafwbiv.jpg"). A listed image not among `files` is a
    DataError naming the listing and the first missing image."""
    index = {"/" + Path(f).relative_to(data_dir).as_posix(): i for i, f in enumerate(files)}
    wanted = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    missing = [w for w in wanted if w not in index]
    if missing:
        raise DataError(f"{listing}: {len(missing)} of its {len(wanted)} images are not under {data_dir} "
                        f"(first: {missing[0]})")
    return [index[w] for w in wanted]


def sun397_partition(ds: Dataset, split: str, partition: int = SUN397_PARTITION) -> Dataset:
    """torchvision's SUN397 cut to the images of the official partition's `split` list."""
    data_dir, files = Path(ds._data_dir), ds._image_files  # type: ignore[attr-defined]
    idx = listed_indices(files, data_dir, partition_file(data_dir, split, partition))
    return keep_classes(Subset(ds, idx), ds)


def joined(parts: Sequence[Dataset]) -> Dataset:
    """The images of `parts` one after the other (DTD train1 + val1, Flowers-102 train + val), with their shared
    class names and every label (data sets without the same classes are a DataError)."""
    classes = [getattr(p, "classes", None) for p in parts]
    if any(c != classes[0] for c in classes):
        raise DataError("the splits to join do not name the same classes")
    labels = [dataset_labels(p) for p in parts]
    both: ConcatDataset = ConcatDataset(list(parts))
    both.classes = classes[0]  # type: ignore[attr-defined]
    if all(y is not None for y in labels):
        both._labels = torch.cat([y for y in labels if y is not None]).tolist()  # type: ignore[attr-defined]
    return both
