"""Readers for the official "-C" layouts (streamed batch by batch).

- CIFAR-10-C / CIFAR-100-C: `<root>/<corruption>.npy` uint8 (5·N, H, W, 3), severities 1..5 in consecutive
  blocks of N, and `<root>/labels.npy`.
- ImageNet-C / Tiny-ImageNet-C: `<root>/<corruption>/<severity>/<wnid>/<image>`, read at their stored
  resolution (`size=None`); the evaluation then frames them like the clean images (`framing.frame`: images
  at the network size are used as they are).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from urrlkit.data.datasets import IMAGE_SUFFIXES, FileDataset
from urrlkit.errors import DataError

NPY_BENCHMARKS = {"cifar10-c", "cifar100-c"}
BENCHMARK_CLASSES = {"cifar10-c": 10, "cifar100-c": 100}  # a label beyond these is not the benchmark's
FOLDER_BENCHMARKS = {"imagenet-c", "tiny-imagenet-c"}

Batch = tuple[torch.Tensor, torch.Tensor]


def detect_layout(root: Path) -> str:
    """'npy' when root holds labels.npy, 'folder' otherwise."""
    return "npy" if (root / "labels.npy").is_file() else "folder"


def check_root(root: Path | None, benchmark: str, corruptions: Sequence[str], field: str) -> Path:
    """The benchmark's root, with a one-line error naming the expected path when it is missing."""
    if root is None:
        raise DataError(f"{field}: set the root of {benchmark} (e.g. --set eval.corruptions.root=PATH)")
    root = Path(root).expanduser()
    first = corruptions[0]
    if benchmark in NPY_BENCHMARKS or (benchmark == "generated-npy"):
        expect = root / "labels.npy"
        if not expect.is_file():
            raise DataError(f"{benchmark}: expected {expect} and {root / (first + '.npy')} ({field})")
        for c in corruptions:
            if not (root / f"{c}.npy").is_file():
                raise DataError(f"{benchmark}: expected {root / (c + '.npy')} ({field})")
        for c in corruptions:  # shapes, dtypes and counts before the evaluation starts, not after hours
            open_npy(root, c, BENCHMARK_CLASSES.get(benchmark))
    else:
        for c in corruptions:
            if not (root / c / "1").is_dir():
                raise DataError(f"{benchmark}: expected {root / c}/<severity>/<wnid>/<image> ({field})")
    return root


def _meta(root: Path) -> dict | None:
    meta = root / "meta.json"
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta}: malformed meta.json ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{meta}: malformed meta.json (expected an object)")
    return data


def _severities(root: Path) -> list[int]:
    """Severities stored in a -C folder: 1..5 for the official sets (no meta.json); urrlkit's meta.json must
    list them (a set written with a subset would otherwise be read as five blocks of the wrong size)."""
    meta = _meta(root)
    if meta is None:
        return [1, 2, 3, 4, 5]
    where = f"{root / 'meta.json'}: severities"
    sevs = meta.get("severities")
    if not isinstance(sevs, list):
        raise DataError(f"{where}: expected a list of severities 1..5, got {sevs!r}")
    if not sevs:
        raise DataError(f"{where}: the list is empty")
    if any(type(s) is not int or not 1 <= s <= 5 for s in sevs) or len(set(sevs)) != len(sevs):
        raise DataError(f"{where}: expected distinct integers 1..5, got {sevs}")
    return list(sevs)


def _check_images(path: Path, arr: np.ndarray, blocks: int, meta: dict | None) -> int:
    """Images per severity of a CIFAR-C array, after checking its layout against the set's meta.json."""
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] % blocks:
        raise DataError(f"{path}: expected uint8 ({blocks}·N, H, W, 3) (channels last, RGB), "
                        f"got {arr.dtype} {arr.shape}")
    n = arr.shape[0] // blocks
    if meta is not None:
        if isinstance(meta.get("n"), int) and meta["n"] != n:
            raise DataError(f"{path}: {arr.shape[0]} images are {n} for each of the {blocks} severities, "
                            f"meta.json says n = {meta['n']}")
        if isinstance(meta.get("size"), int) and arr.shape[1:3] != (meta["size"], meta["size"]):
            raise DataError(f"{path}: images are {arr.shape[1]}×{arr.shape[2]}, meta.json says size {meta['size']}")
    return n


def _check_labels(path: Path, labels: np.ndarray, n: int, blocks: int, meta: dict | None,
                  num_classes: int | None) -> None:
    """labels.npy: 1-d integer class indices, N or blocks·N of them, each a class of the set and the model."""
    if labels.ndim != 1:
        raise DataError(f"{path}: expected a 1-d array of class indices, got shape {labels.shape}"
                        + (" (one-hot?)" if labels.ndim == 2 else ""))
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: expected integer class indices, got {labels.dtype}")
    if labels.shape[0] not in (n, blocks * n):
        raise DataError(f"{path}: {labels.shape[0]} labels for {n} images per severity × {blocks} severities "
                        f"(expected {n} or {blocks * n})")
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    classes = meta.get("classes") if meta is not None else None
    limits = [(len(classes), " of the set's meta.json")] if isinstance(classes, list) else []
    if num_classes is not None:
        limits.append((num_classes, ""))
    if lo < 0:
        raise DataError(f"{path}: labels must be ≥ 0, found {lo}")
    for k, who in limits:
        if hi >= k:
            raise DataError(f"{path}: label {hi} is out of range for the {k} classes{who} (labels 0–{k - 1})")


def open_npy(root: Path, corruption: str, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A CIFAR-C corruption's images and labels (memory-mapped) and its severities, checked against each other,
    the set's meta.json and (with `num_classes`) the model; errors name the file at fault."""
    path = root / f"{corruption}.npy"
    sevs = _severities(root)
    meta = _meta(root)
    arrays = []
    for p in (path, root / "labels.npy"):
        try:
            arrays.append(np.load(p, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise DataError(f"{p}: cannot read ({exc})") from None
    arr, labels = arrays
    n = _check_images(path, arr, len(sevs), meta)
    _check_labels(root / "labels.npy", labels, n, len(sevs), meta, num_classes)
    return arr, labels, sevs


def iter_npy(
    root: Path, corruption: str, severity: int, batch_size: int, limit: int | None = None,
    num_classes: int | None = None,
) -> Iterator[Batch]:
    """Batches (uint8 NCHW, labels) of one corruption and severity from a CIFAR-C folder (memory-mapped)."""
    arr, labels, sevs = open_npy(root, corruption, num_classes)
    blocks = len(sevs)
    if severity not in sevs:
        raise DataError(f"{root / (corruption + '.npy')}: has no severity {severity} (has {sevs})")
    n = arr.shape[0] // blocks
    start = sevs.index(severity) * n
    lab_off = start if labels.shape[0] == blocks * n else 0
    total = n if limit is None else min(n, limit)
    for i in range(0, total, batch_size):
        j = min(i + batch_size, total)
        x = torch.from_numpy(np.array(arr[start + i : start + j])).permute(0, 3, 1, 2).contiguous()
        y = torch.from_numpy(np.asarray(labels[lab_off + i : lab_off + j]).astype(np.int64))
        yield x, y


def folder_dataset(
    root: Path,
    corruption: str,
    severity: int,
    size: int | None,
    classes: Sequence[str] | None,
    limit: int | None = None,
) -> FileDataset:
    """`<root>/<corruption>/<severity>/<class>/<image>` with labels by `classes` (the model's class names);
    sorted folder names when `classes` is None. `size` None: the (square) size of the first image, so the
    images are read as stored."""
    base = root / corruption / str(severity)
    if not base.is_dir():
        raise DataError(f"expected {base}/<wnid>/<image>")
    folders = sorted(p.name for p in base.iterdir() if p.is_dir())
    index = {c: i for i, c in enumerate(classes if classes is not None else folders)}
    files: list[Path] = []
    labels: list[int] = []
    for f in folders:
        if f not in index:
            raise DataError(f"{base / f}: class {f!r} is not one of the model's classes")
        found = sorted(p for p in (base / f).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [index[f]] * len(found)
    if limit is not None:
        files, labels = _spread(files, labels, limit)
    if not files:
        raise DataError(f"no images under {base}/<wnid>/")
    if size is None:
        size = _stored_size(files[0])
    return FileDataset(files, labels, list(index), size, source=str(base))


def _stored_size(path: Path) -> int:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return min(img.size)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None


def _spread(files: list[Path], labels: list[int], limit: int) -> tuple[list[Path], list[int]]:
    """A deterministic subset of `limit` images spread over the classes (every k-th file)."""
    if limit >= len(files):
        return files, labels
    idx = np.linspace(0, len(files) - 1, limit).round().astype(int)
    return [files[i] for i in idx], [labels[i] for i in idx]


def iter_folder(
    root: Path,
    corruption: str,
    severity: int,
    size: int | None,
    classes: Sequence[str] | None,
    batch_size: int,
    limit: int | None = None,
    workers: int = 0,
) -> Iterator[Batch]:
    ds = folder_dataset(root, corruption, severity, size, classes, limit)
    yield from DataLoader(ds, batch_size=batch_size, num_workers=workers)
