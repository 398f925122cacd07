"""The paper's transfer sets through torchvision.datasets (aircraft, cars, DTD, flowers, food, pets, STL-10,
Caltech-101/256, SUN397), registered by name in a loop and imported lazily; a missing folder offline is a one-line
error."""

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
    _tv("dtd", lambda r, s, d: tvd.DTD(r, split=split("train", "test")(s), download=d), folder="dtd")
    _tv("flowers102", lambda r, s, d: tvd.Flowers102(r, split=split("train", "test")(s), download=d),
        folder="flowers-102")
    _tv("food101", lambda r, s, d: tvd.Food101(r, split=split("train", "test")(s), download=d),
        folder="food-101")
    _tv("pets", lambda r, s, d: tvd.OxfordIIITPet(r, split=tv(s), download=d), folder="oxford-iiit-pet")
    _tv("stl10", lambda r, s, d: tvd.STL10(r, split=split("train", "test")(s), download=d),
        folder="stl10_binary")
    # Caltech-101/256 and SUN397 ship no split; urrlkit carves a fixed 80/20 one (seed 0), see the README.
    _tv("caltech101", lambda r, s, d: _carve(tvd.Caltech101(r, download=d), s), classes_attr="categories",
        folder="caltech101")
    _tv("caltech256", lambda r, s, d: _carve(tvd.Caltech256(r, download=d), s), classes_attr="categories",
        folder="caltech256")
    _tv("sun397", lambda r, s, d: _carve(tvd.SUN397(r, download=d), s), folder="SUN397")


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
