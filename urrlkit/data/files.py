"""Data sets read from image files: the ImageFolder layout (generic, ImageNet, Birdsnap) and Tiny-ImageNet-200 as
it unpacks."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from urrlkit.data.base import DataRequest, FileDataset, _check_split, _missing, _root
from urrlkit.errors import DataError
from urrlkit.registry import DATASETS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}


def image_folder(root: Path, name: str, size: int) -> FileDataset:
    """`root/<class>/**/<image>` (torchvision ImageFolder layout), classes sorted by name."""
    if not root.is_dir():
        raise _missing(name, f"{root}/<class>/<image> (ImageFolder layout)", download_hint=False)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for idx, cls in enumerate(classes):
        # Hidden files (macOS '._x.jpg' resource forks) share image suffixes but are not images.
        found = sorted(p for p in (root / cls).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        files += found
        labels += [idx] * len(found)
    if not files:
        raise DataError(f"data set {name!r}: no images under {root}/<class>/")
    return FileDataset(files, labels, classes, size, source=str(root))


def relabel_by_name(ds: Dataset, classes: list[str]) -> None:
    """Relabel `ds` in place to index `classes` by name (every class of `ds` must be in `classes`): an
    ImageFolder numbers its folders by sorted position, so a split with a folder missing numbers the rest
    differently from the data set a model was trained on. ValueError for a data set whose labels cannot be
    rewritten."""
    labels = getattr(ds, "labels", None)
    own = list(getattr(ds, "classes", []))
    if not isinstance(labels, torch.Tensor) or not own:
        raise ValueError(f"its classes differ from the model's and its labels ({type(ds).__name__}) cannot be "
                         "mapped by class name")
    index = torch.tensor([classes.index(c) for c in own], dtype=torch.long)
    ds.labels = index[labels]  # type: ignore[attr-defined]
    ds.classes = list(classes)  # type: ignore[attr-defined]


@DATASETS.register("imagefolder")
def imagefolder(req: DataRequest) -> Dataset:
    """Generic ImageFolder: `<root>/<split>/<class>/<image>`."""
    return image_folder(_root(req, "imagefolder") / req.split, "imagefolder", req.size)


@DATASETS.register("imagenet")
def imagenet(req: DataRequest) -> Dataset:
    """ImageNet in ImageFolder layout: `<root>/train/<wnid>/…` and `<root>/val/<wnid>/…`."""
    split = {"test": "val"}.get(req.split, req.split)
    return image_folder(_root(req, "imagenet") / split, "imagenet", req.size)


@DATASETS.register("birdsnap")
def birdsnap(req: DataRequest) -> Dataset:
    """Birdsnap has no torchvision loader: `<root>/<split>/<species>/<image>` (ImageFolder)."""
    return image_folder(_root(req, "birdsnap") / req.split, "birdsnap", req.size)


@DATASETS.register("tiny-imagenet")
def tiny_imagenet(req: DataRequest) -> Dataset:
    """Tiny-ImageNet-200 as it unpacks: train/<wnid>/images/*.JPEG, val/images + val/val_annotations.txt.
    The official test split has no labels, so `test` means the labelled val split."""
    _check_split("tiny-imagenet", req.split)
    root = _root(req, "tiny-imagenet-200")
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        raise _missing("tiny-imagenet", f"{wnids_file} with train/<wnid>/images/ and val/val_annotations.txt",
                       download_hint=False)
    wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(wnids)}
    files: list[Path] = []
    labels: list[int] = []
    if req.split == "train":
        for w in wnids:
            found = sorted((root / "train" / w / "images").glob("*.JPEG"))
            files += found
            labels += [index[w]] * len(found)
    else:
        ann = root / "val" / "val_annotations.txt"
        if not ann.is_file():
            raise _missing("tiny-imagenet", str(ann), download_hint=False)
        for n, line in enumerate(ann.read_text().splitlines(), 1):
            parts = line.split("\t")
            if len(parts) >= 2:
                if parts[1] not in index:
                    raise DataError(f"{ann}:{n}: class {parts[1]!r} is not in {wnids_file}")
                files.append(root / "val" / "images" / parts[0])
                labels.append(index[parts[1]])
    if not files:
        raise DataError(f"data set 'tiny-imagenet': no images found under {root}/{req.split}")
    return FileDataset(files, labels, wnids, req.size, source=str(root))
