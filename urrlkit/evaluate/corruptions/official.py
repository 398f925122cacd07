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
    else:
        for c in corruptions:
            if not (root / c / "1").is_dir():
                raise DataError(f"{benchmark}: expected {root / c}/<severity>/<wnid>/<image> ({field})")
    return root


def _severities(root: Path) -> list[int]:
    """Severities stored in a -C folder: 1..5 unless urrlkit's meta.json says otherwise."""
    meta = root / "meta.json"
    if meta.is_file():
        try:
            return [int(s) for s in json.loads(meta.read_text()).get("severities", [1, 2, 3, 4, 5])]
        except (ValueError, TypeError, AttributeError):
            raise DataError(f"{meta}: malformed meta.json") from None
    return [1, 2, 3, 4, 5]


def iter_npy(
    root: Path, corruption: str, severity: int, batch_size: int, limit: int | None = None
) -> Iterator[Batch]:
    """Batches (uint8 NCHW, labels) of one corruption and severity from a CIFAR-C folder (memory-mapped)."""
    path = root / f"{corruption}.npy"
    try:
        arr = np.load(path, mmap_mode="r")
        labels = np.load(root / "labels.npy", mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    sevs = _severities(root)
    blocks = len(sevs)
    if arr.ndim != 4 or arr.shape[0] % blocks or arr.dtype != np.uint8:
        raise DataError(f"{path}: expected uint8 ({blocks}·N, H, W, 3), got {arr.dtype} {arr.shape}")
    if severity not in sevs:
        raise DataError(f"{path}: has no severity {severity} (has {sevs})")
    n = arr.shape[0] // blocks
    if labels.shape[0] not in (n, blocks * n):
        raise DataError(f"{root / 'labels.npy'}: {labels.shape[0]} labels for {n} images per severity")
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
