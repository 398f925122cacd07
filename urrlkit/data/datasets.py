"""Named data sets. Every one yields `(uint8 CHW tensor, int label)` at a fixed stored size, so batches
stack and augmentation runs batched on the device. Variable-size images are resized (shorter side) and
centre-cropped to the stored size on load — torchvision's Resize + CenterCrop — and random crops happen later,
per sample, in `urrlkit.augment`.

File-backed data sets (image files, torchvision's transfer sets) can also yield each image as decoded, at its
own size (`originals`): training crops are then drawn on the original image, as the reference pipelines draw
them (`urrlkit.augment.crops`)."""

from __future__ import annotations

import copy
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

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
        return len(self.ds)  # type: ignore[arg-type]

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
    return img.resize((size, new_long) if w <= h else (new_long, size), Image.BILINEAR)


def center_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision's ``CenterCrop(size)``: ``int(round((H − size) / 2))`` (half to even)."""
    return round((height - size) / 2.0), round((width - size) / 2.0)


def pil_to_uint8(img: Image.Image, size: int | None) -> torch.Tensor:
    """``Resize(size)`` + ``CenterCrop(size)`` as torchvision computes them, as uint8 CHW; `size` None: the
    image as it is (RGB)."""
    img = img.convert("RGB")
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


def subset_indices(n: int, limit: int) -> list[int]:
    """A fixed random subset (seed 0), in data-set order. Many test splits are sorted by class, so the first
    N images would be a few classes only."""
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit]
    return sorted(keep.tolist())


def _limit(ds: Dataset, limit: int | None) -> Dataset:
    if limit is None or limit >= len(ds):  # type: ignore[arg-type]
        return ds
    idx = subset_indices(len(ds), limit)  # type: ignore[arg-type]
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


# --------------------------------------------------------------------------------------- array formats


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


# --------------------------------------------------------------------------------------- file layouts

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
    for attr in ("y", "targets", "_labels", "labels"):
        ys = getattr(ds, attr, None)
        if ys is not None:
            return int(max(ys)) + 1
    raise DataError("cannot infer the number of classes")


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
    n = len(ds)  # type: ignore[arg-type]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    cut = int(n * (1 - test_fraction))
    sub = torch.utils.data.Subset(ds, perm[:cut] if split == "train" else perm[cut:])
    for attr in ("classes", "categories"):
        if hasattr(ds, attr):
            setattr(sub, attr, getattr(ds, attr))
    return sub


_register_transfer_sets()
