"""The paper's transfer sets through torchvision.datasets (aircraft, cars, DTD, flowers, food, pets, STL-10,
Caltech-101/256, SUN397), registered by name in a loop and imported lazily; a missing folder offline is a one-line
error.

The plain names split as Salman et al. (2020) do, the protocol of the paper's Table 2 (transfer_splits.py):
Caltech-101 / -256 with 30 / 60 training images per class, SUN397 partition 1, DTD train1 + val1, Flowers-102
train + val. The splits urrlkit used before stay as named options (the data set name is the recipe's choice,
data.dataset or finetune.dataset): `caltech101-random80`, `caltech256-random80`, `sun397-random80` (a fixed
random 80/20 carve of all images, seed 0, not per class), `dtd-train1` (train1 only) and `flowers102-train`
(train only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from urrlkit.data.base import (
    DataRequest,
    TorchvisionDataset,
    _check_split,
    _missing,
    _root,
    dataset_labels,
    dataset_len,
)
from urrlkit.data.transfer_splits import (
    CALTECH101_TRAIN_PER_CLASS,
    CALTECH256_TRAIN_PER_CLASS,
    joined,
    per_class_split,
    sun397_partition,
)
from urrlkit.errors import DataError
from urrlkit.registry import DATASETS


def _tv(name: str, factory: Callable[[str, str, bool], Dataset], classes_attr: str = "classes",
        folder: str | None = None) -> Callable[[DataRequest], Dataset]:
    """Register a torchvision transfer data set; offline a missing folder is a one-line error."""

    def build_tv(req: DataRequest) -> Dataset:
        _check_split(name, req.split)
        root = _root(req, name)
        expect = root / (folder or "")
        if not req.download and not expect.exists():
            raise _missing(name, f"{expect} (torchvision layout)")
        try:
            ds = factory(str(root), req.split, req.download)
        except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
            raise DataError(f"data set {name!r} under {root}: {exc}") from None
        except OSError as exc:  # offline download: URLError is an OSError
            raise DataError(f"data set {name!r}: download to {root} failed ({exc})") from None
        classes = getattr(ds, classes_attr, None) or [str(i) for i in range(_count_labels(ds))]
        return TorchvisionDataset(ds, classes, req.size, source=str(root))

    build_tv.__doc__ = f"torchvision's {name} (the paper's transfer set); `download = true` fetches it."
    DATASETS.add(name, build_tv)
    return build_tv


def _count_labels(ds: Dataset) -> int:
    ys = dataset_labels(ds)
    if ys is None or ys.numel() == 0:
        raise DataError("cannot infer the number of classes")
    return int(ys.max()) + 1


class _LazyTorchvisionDatasets:
    """torchvision.datasets, imported on first use: the import pulls in torchvision.models (seconds,
    docs/benchmarks.md), which registering the names — all that `urrl recipe validate` needs — should not cost."""

    def __getattr__(self, name: str) -> Any:
        import torchvision.datasets

        return getattr(torchvision.datasets, name)


def _register_transfer_sets() -> None:
    tvd = _LazyTorchvisionDatasets()

    def split(train: str, test: str) -> Callable[[str], str]:
        return lambda s: train if s == "train" else test

    tv = split("trainval", "test")
    _tv("aircraft", lambda r, s, d: tvd.FGVCAircraft(r, split=tv(s), download=d),
        folder="fgvc-aircraft-2013b")
    _tv("cars", lambda r, s, d: tvd.StanfordCars(r, split=split("train", "test")(s), download=d),
        folder="stanford_cars")
    _tv("dtd", lambda r, s, d: _dtd(tvd, r, s, d, with_val=True), folder="dtd")
    _tv("dtd-train1", lambda r, s, d: _dtd(tvd, r, s, d, with_val=False), folder="dtd")
    _tv("flowers102", lambda r, s, d: _flowers(tvd, r, s, d, with_val=True), folder="flowers-102")
    _tv("flowers102-train", lambda r, s, d: _flowers(tvd, r, s, d, with_val=False), folder="flowers-102")
    _tv("food101", lambda r, s, d: tvd.Food101(r, split=split("train", "test")(s), download=d),
        folder="food-101")
    _tv("pets", lambda r, s, d: tvd.OxfordIIITPet(r, split=tv(s), download=d), folder="oxford-iiit-pet")
    _tv("stl10", lambda r, s, d: tvd.STL10(r, split=split("train", "test")(s), download=d),
        folder="stl10_binary")
    # Caltech-101/256 and SUN397 ship no split: Salman et al.'s per-class counts and SUN397's partition 1, or
    # the fixed 80/20 carve (seed 0) urrlkit used before.
    _tv("caltech101", lambda r, s, d: per_class_split(tvd.Caltech101(r, download=d), CALTECH101_TRAIN_PER_CLASS, s),
        classes_attr="categories", folder="caltech101")
    _tv("caltech101-random80", lambda r, s, d: _carve(tvd.Caltech101(r, download=d), s), classes_attr="categories",
        folder="caltech101")
    _tv("caltech256", lambda r, s, d: per_class_split(tvd.Caltech256(r, download=d), CALTECH256_TRAIN_PER_CLASS, s),
        classes_attr="categories", folder="caltech256")
    _tv("caltech256-random80", lambda r, s, d: _carve(tvd.Caltech256(r, download=d), s), classes_attr="categories",
        folder="caltech256")
    _tv("sun397", lambda r, s, d: sun397_partition(tvd.SUN397(r, download=d), s), folder="SUN397")
    _tv("sun397-random80", lambda r, s, d: _carve(tvd.SUN397(r, download=d), s), folder="SUN397")


def _dtd(tvd: Any, root: str, split: str, download: bool, with_val: bool) -> Dataset:
    """DTD partition 1: train1 (+ val1 when `with_val`, Salman et al.'s training set) or test1."""
    if split != "train":
        return tvd.DTD(root, split="test", partition=1, download=download)
    train = tvd.DTD(root, split="train", partition=1, download=download)
    return joined([train, tvd.DTD(root, split="val", partition=1)]) if with_val else train


def _flowers(tvd: Any, root: str, split: str, download: bool, with_val: bool) -> Dataset:
    """Flowers-102's official split: train (+ val when `with_val`, Salman et al.'s training set) or test."""
    if split != "train":
        return tvd.Flowers102(root, split="test", download=download)
    train = tvd.Flowers102(root, split="train", download=download)
    return joined([train, tvd.Flowers102(root, split="val")]) if with_val else train


def _carve(ds: Dataset, split: str, test_fraction: float = 0.2) -> Dataset:
    n = dataset_len(ds)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    cut = int(n * (1 - test_fraction))
    sub = torch.utils.data.Subset(ds, perm[:cut] if split == "train" else perm[cut:])
    for attr in ("classes", "categories"):
        if hasattr(ds, attr):
            setattr(sub, attr, getattr(ds, attr))
    return sub


_register_transfer_sets()
