"""Data sets held as arrays: the bundled CIFAR-10 sample, generic npz files, CIFAR-10/100 (npz or torchvision's
pickled batches, read by torchvision)."""

from __future__ import annotations

import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from urrlkit.data.base import ArrayDataset, DataRequest, _check_split, _missing, _root
from urrlkit.errors import DataError
from urrlkit.registry import DATASETS


def _from_npz(path: Path, name: str, size: int, prefix: str = "") -> ArrayDataset:
    if not path.is_file():
        raise _missing(name, f"{path} (an npz with 'images' uint8 NHWC and 'labels')", download_hint=False)
    try:
        # np.load is lazy: decoding errors (pickled object arrays, truncated members) surface on access,
        # so the whole read sits inside the try, and `with` closes the file handle.
        with np.load(path, allow_pickle=False) as arr:
            for key in (f"{prefix}images", f"{prefix}labels"):
                if key not in arr:
                    raise DataError(f"{path}: missing array {key!r} (has {', '.join(arr.files)})")
            images, labels = arr[f"{prefix}images"], arr[f"{prefix}labels"]
            classes = [str(c) for c in arr["classes"]] if "classes" in arr else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read npz ({exc.__class__.__name__}: {exc})") from None
    return ArrayDataset(images, labels, classes, size, source=str(path))


@DATASETS.register("cifar10-sample")
def cifar10_sample(req: DataRequest) -> Dataset:
    """1,000 CIFAR-10 training and 500 test images (class-balanced) bundled with urrlkit."""
    _check_split("cifar10-sample", req.split)
    ref = resources.files("urrlkit.data") / "sample" / "cifar10-sample.npz"
    with resources.as_file(ref) as path:
        return _from_npz(path, "cifar10-sample", req.size, prefix=f"{req.split}_")


@DATASETS.register("npz")
def npz(req: DataRequest) -> Dataset:
    """Generic arrays: `<root>/<split>.npz` with `images` (uint8 NHWC), `labels` and optional `classes`."""
    root = _root(req, "npz")
    return _from_npz(root / f"{req.split}.npz", "npz", req.size)


def _cifar(name: str, tv_cls_name: str, folder: str, req: DataRequest) -> Dataset:
    _check_split(name, req.split)
    root = _root(req, name)
    if (root / f"{req.split}.npz").is_file():  # the npz layout urrlkit also writes and reads offline
        return _from_npz(root / f"{req.split}.npz", name, req.size)
    import torchvision.datasets as tvd

    if not (root / folder).is_dir() and not req.download:
        raise _missing(name, f"{root / folder}/ (torchvision layout) or {root}/{req.split}.npz")
    try:
        ds = getattr(tvd, tv_cls_name)(str(root), train=req.split == "train", download=req.download)
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise DataError(f"data set {name!r} under {root}: {exc}") from None
    except OSError as exc:  # offline download: URLError is an OSError
        raise DataError(f"data set {name!r}: download to {root} failed ({exc})") from None
    return ArrayDataset(ds.data, ds.targets, ds.classes, req.size, source=str(root / folder))


@DATASETS.register("cifar10")
def cifar10(req: DataRequest) -> Dataset:
    return _cifar("cifar10", "CIFAR10", "cifar-10-batches-py", req)


@DATASETS.register("cifar100")
def cifar100(req: DataRequest) -> Dataset:
    return _cifar("cifar100", "CIFAR100", "cifar-100-python", req)
