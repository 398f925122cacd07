"""What every named data set is made of: the request a factory gets, the three data set classes (arrays in
memory, image files, torchvision adapters), torchvision-exact decoding to the stored size (Resize + CenterCrop),
the fixed subset of `limit`, and `build` (name → data set through the DATASETS registry).

Every data set yields `(uint8 CHW tensor, int label)` at a fixed stored size, so batches stack and augmentation
runs batched on the device; random crops happen later, per sample, in `urrlkit.augment`."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset

from urrlkit.errors import DataError
from urrlkit.registry import DATASETS

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DataRequest:
    """What a caller asks of a data set factory."""

    root: Path | None
    split: str
    size: int
    download: bool = False
    limit: int | None = None


class ArrayDataset(Dataset):
    """Images held in memory as one uint8 NCHW tensor (CIFAR, npz arrays, the bundled sample).

    The arrays are checked before use (`check_arrays`); `classes` None: "0" … "max label"."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels: Sequence[int] | np.ndarray,
                 classes: Sequence[str] | None, size: int | None = None, source: str = "") -> None:
        images, labels = np.asarray(images), np.asarray(labels)
        check_arrays(images, labels, None if classes is None else len(classes), source)
        if classes is None:
            classes = [str(i) for i in range(int(labels.max()) + 1)]
        x = torch.as_tensor(images).permute(0, 3, 1, 2).contiguous()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1).contiguous()
        if size is not None and x.shape[-1] != size:
            x = _resize_batch(x, size)
        self.images = x
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.classes = list(classes)
        self.source = source

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def check_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int | None, source: str) -> None:
    """One DataError line naming `source` unless `images` is (N, S, S, 1 or 3) uint8 with N ≥ 1 and `labels` is
    N integers in [0, num_classes) (num_classes None: any non-negative integers). Caught here, a label out of
    range or a float label would otherwise train and score silently wrong (0.00 % top-1), a count mismatch
    drop images, and a non-square array be squashed by the resize."""
    shape = tuple(images.shape)
    if images.ndim != 4 or shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise DataError(f"{source}: expected uint8 images of shape (N, H, W, 3), got {shape} {images.dtype}")
    if shape[0] == 0:
        raise DataError(f"{source}: the split holds no images (images has shape {shape})")
    if shape[1] != shape[2] or shape[1] == 0:
        raise DataError(f"{source}: images are {shape[1]}x{shape[2]} pixels; an array data set holds square "
                        "images (N, S, S, 3) of one size")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{source}: labels must be a 1-D array of integers, got shape {tuple(labels.shape)} "
                        f"{labels.dtype}")
    if len(labels) != shape[0]:
        raise DataError(f"{source}: {len(labels)} labels for {shape[0]} images")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        raise DataError(f"{source}: labels must be ≥ 0, found {lo}")
    if num_classes is not None and hi >= num_classes:
        raise DataError(f"{source}: label {hi} is out of range for {num_classes} classes (labels 0–{num_classes - 1})")


class FileDataset(Dataset):
    """Images read from files on demand; a file that cannot be decoded is named in the error.
    `original = True`: each image as decoded, at its own size (see `originals`)."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], classes: Sequence[str], size: int,
                 source: str = "", original: bool = False) -> None:
        self.files = list(files)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.classes = list(classes)
        self.size = size
        self.source = source
        self.original = original

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_image(self.files[i], None if self.original else self.size), int(self.labels[i])


class TorchvisionDataset(Dataset):
    """Adapter for torchvision data sets that return PIL images (`original`: as in FileDataset)."""

    def __init__(self, ds: Dataset, classes: Sequence[str], size: int, source: str = "",
                 original: bool = False) -> None:
        self.ds = ds
        self.classes = list(classes)
        self.size = size
        self.source = source
        self.original = original

    def __len__(self) -> int:
        return dataset_len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img, label = self.ds[i]
        return pil_to_uint8(img, None if self.original else self.size), int(label)


def originals(ds: Dataset) -> Dataset | None:
    """`ds` yielding every image as decoded, at its own size (uint8 CHW, RGB), with the same labels, order and
    subset; None for data sets held as arrays (CIFAR, npz, the bundled sample), which have no other original."""
    if isinstance(ds, Subset):
        inner = originals(ds.dataset)
        if inner is None:
            return None
        sub = Subset(inner, ds.indices)
        for attr in ("classes", "categories"):
            if hasattr(ds, attr):
                setattr(sub, attr, getattr(ds, attr))
        return sub
    if isinstance(ds, FileDataset | TorchvisionDataset):
        out = copy.copy(ds)
        out.original = True
        return out
    return None


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    """torchvision's ``Resize(size)`` on a PIL image: the shorter side to `size`, the longer to
    ``int(size · long / short)`` (truncated, as torchvision computes it), PIL bilinear (antialiased)."""
    w, h = img.size
    short, long = min(w, h), max(w, h)
    if short == size:
        return img
    new_long = int(size * long / short)
    return img.resize((size, new_long) if w <= h else (new_long, size), Image.Resampling.BILINEAR)


def center_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision's ``CenterCrop(size)``: ``int(round((H − size) / 2))`` (half to even)."""
    return round((height - size) / 2.0), round((width - size) / 2.0)


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (PIL modes I;16, I;16B, I;16L; "I" as older Pillow opens a 16-bit PNG) as
    8-bit L, scaled by 255/65535 and rounded: PIL's own convert("RGB") clips at 255, so a 16-bit PNG would read
    as saturated white. Pixels with no 8-bit scale (floating point, 32-bit integers beyond 16 bits) are a
    ValueError. 16-bit RGB PNGs already open as 8-bit RGB (PIL keeps the high byte)."""
    if img.mode.startswith("I;16") or img.mode == "I":
        a = np.asarray(img).astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(f"{img.mode} pixels range over {a.min()}..{a.max()}, beyond 16 bits; "
                             "save it as an 8- or 16-bit image")
        return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")
    if img.mode == "F":
        raise ValueError("floating-point pixels have no 8-bit scale; save it as an 8- or 16-bit image")
    return img


def pil_to_uint8(img: Image.Image, size: int | None) -> torch.Tensor:
    """``Resize(size)`` + ``CenterCrop(size)`` as torchvision computes them, as uint8 CHW; `size` None: the
    image as it is (RGB). 16-bit grayscale is scaled to 8 bit first (`to_8bit`)."""
    img = to_8bit(img).convert("RGB")
    if size is not None and img.size != (size, size):
        img = resize_shorter(img, size)
        w, h = img.size
        top, left = center_offsets(h, w, size)
        img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


def load_image(path: Path, size: int | None) -> torch.Tensor:
    """The image at `path` as `pil_to_uint8(img, size)` returns it."""
    try:
        with Image.open(path) as img:
            return pil_to_uint8(img, size)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # PIL reports some broken PNG chunks as SyntaxError; whatever the cause, name the file.
        raise DataError(f"{path}: cannot read image ({exc.__class__.__name__}: {exc})") from None


def _resize_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    y = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                                        align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def dataset_len(ds: Dataset) -> int:
    """len(ds). torch's Dataset declares no __len__ (an IterableDataset has none), so a type checker cannot
    take any Dataset as sized; every data set urrlkit builds or is given is map-style."""
    if not isinstance(ds, Sized):
        raise TypeError(f"{type(ds).__name__} has no len(): a map-style data set is needed")
    return len(ds)


# Attributes a data set may keep its labels in: ours (ArrayDataset, FileDataset) and torchvision's sets.
LABEL_ATTRS = ("labels", "targets", "_labels", "y")


def dataset_labels(ds: Dataset) -> torch.Tensor | None:
    """Every image's label, in data-set order, read from the data set's label list (no image is decoded);
    None for a data set without labels. Subsets (data.train_limit) and torchvision adapters are looked through."""
    if isinstance(ds, Subset):
        inner = dataset_labels(ds.dataset)
        return None if inner is None else inner[torch.as_tensor(ds.indices, dtype=torch.long)]
    for attr in LABEL_ATTRS:
        ys = getattr(ds, attr, None)
        if ys is not None and len(ys) == dataset_len(ds):
            return torch.as_tensor(ys, dtype=torch.long).reshape(-1).clone()
    inner_ds = getattr(ds, "ds", None)  # TorchvisionDataset wraps the torchvision set
    return dataset_labels(inner_ds) if isinstance(inner_ds, Dataset) else None


def subset_indices(n: int, limit: int) -> list[int]:
    """A fixed random subset (seed 0), in data-set order. Many test splits are sorted by class, so the first
    N images would be a few classes only."""
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit]
    return sorted(keep.tolist())


def _limit(ds: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= dataset_len(ds):
        return ds
    idx = subset_indices(dataset_len(ds), limit)
    if isinstance(ds, ArrayDataset):
        ds.images, ds.labels = ds.images[idx], ds.labels[idx]
        return ds
    if isinstance(ds, FileDataset):
        ds.files, ds.labels = [ds.files[i] for i in idx], ds.labels[idx]
        return ds
    sub = torch.utils.data.Subset(ds, idx)
    sub.classes = ds.classes  # type: ignore[attr-defined]
    return sub


def _missing(name: str, expected: str, download_hint: bool = True) -> DataError:
    hint = "; set data.download = true (or --set data.download=true) to fetch it" if download_hint else ""
    return DataError(f"data set {name!r}: expected {expected}{hint}")


def _root(req: DataRequest, name: str) -> Path:
    if req.root is None:
        return Path("data") / name
    return Path(req.root).expanduser()


def _check_split(name: str, split: str, allowed: Sequence[str] = SPLITS) -> None:
    if split not in allowed:
        raise DataError(f"data set {name!r}: unknown split {split!r}; allowed: {', '.join(allowed)}")


def build(name: str, req: DataRequest) -> Dataset:
    """Build the named data set for `req`; unknown names raise with the registered ones."""
    factory: Callable[[DataRequest], Dataset] = DATASETS.get(name)
    return _limit(factory(req), req.limit)


def num_classes(ds: Dataset) -> int:
    return len(ds.classes)  # type: ignore[attr-defined]
