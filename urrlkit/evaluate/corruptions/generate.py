"""Generate "-C" versions of any registered data set and write them in the official layouts.

Array data sets (CIFAR-10/100, npz, the bundled sample) are written as CIFAR-C: `<corruption>.npy`
(5·N, H, W, 3) uint8 with severities 1..5 in consecutive blocks, plus `labels.npy`. File data sets
(ImageFolder, ImageNet, Tiny-ImageNet, torchvision sets) are written as ImageNet-C:
`<corruption>/<severity>/<class>/<image>.JPEG` (JPEG quality 85, as the official sets). `meta.json` records
the data set, split, size, seed, size class and urrlkit version.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from urrlkit.data import DataRequest, build, to_tensors
from urrlkit.data.datasets import ArrayDataset, FileDataset
from urrlkit.errors import DataError
from urrlkit.evaluate.corruptions import CHUNK, check_names, corrupt
from urrlkit.evaluate.corruptions.framing import corrupt_framed, load_size, source_size
from urrlkit.evaluate.corruptions.output import check_output, staged_output
from urrlkit.evaluate.corruptions.params import size_class
from urrlkit.evaluate.corruptions.textures import frost_source
from urrlkit.version import __version__

JPEG_QUALITY = 85


def native_size(dataset: str, root: Path | None, split: str) -> int:
    """The size a -C set of `dataset` is written at: its native resolution, or 224 for photographs (which
    `build` frames as Resize + CenterCrop, the ImageNet-C recipe)."""
    return source_size(dataset, root, split) or 224


def _file_names(ds: object, n: int, labels: list[int]) -> list[str]:
    """`<stem>.JPEG` per image, as ImageNet-C names its files. Files of one class that share a stem
    (`dup.png`, `dup.jpg`) would overwrite each other: those keep their suffix (`dup.png.JPEG`), and a name
    that still collides (file systems that ignore case) is refused."""
    if not isinstance(ds, FileDataset):
        return [f"{i:06d}.JPEG" for i in range(n)]
    paths = [Path(f) for f in ds.files[:n]]
    stems: dict[tuple[int, str], int] = {}
    for p, y in zip(paths, labels, strict=True):
        stems[y, p.stem.lower()] = stems.get((y, p.stem.lower()), 0) + 1
    names = [p.name + ".JPEG" if stems[y, p.stem.lower()] > 1 else p.stem + ".JPEG"
             for p, y in zip(paths, labels, strict=True)]
    seen: dict[tuple[int, str], Path] = {}
    for p, y, name in zip(paths, labels, names, strict=True):
        if (y, name.lower()) in seen:
            raise DataError(f"{p}: would be written as {name}, which is {seen[y, name.lower()].name}'s name on a "
                            "file system that ignores case (rename one)")
        seen[y, name.lower()] = p
    return names


def run_corrupt(
    dataset: str,
    out_dir: Path,
    root: Path | None = None,
    split: str = "test",
    size: int | None = None,
    corruptions: list[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    severities: list[int] | None = None,
    console: Console | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the -C version of `dataset` (its `split`; with `limit`, the data set's
    fixed `limit`-image subset) under `out_dir`, which must be empty or new unless `overwrite`. The set is
    built beside `out_dir` and moved in when complete (output.py), so a stop or error leaves `out_dir` as it was."""
    console = console or Console(highlight=False)
    names = check_names(corruptions, "--corruption")
    sevs = severities or [1, 2, 3, 4, 5]
    out_dir = Path(out_dir)
    check_output(out_dir, overwrite)
    try:
        return _run(dataset, out_dir, root, split, size, names, limit, seed, sevs, console)
    except KeyboardInterrupt as exc:  # the message says what a stop leaves (cli.py `_kept_note`)
        exc.kept = f"{out_dir} was left as it was"  # type: ignore[attr-defined]
        raise


def _run(dataset: str, out_dir: Path, root: Path | None, split: str, size: int | None, names: list[str],
         limit: int | None, seed: int, sevs: list[int], console: Console) -> Path:
    size = size or native_size(dataset, root, split)
    # loaded as evaluation loads the clean split, so generated and clean images share one framing
    ds = build(dataset, DataRequest(root=root, split=split, size=load_size(dataset, root, split, size), limit=limit))
    images, labels = to_tensors(ds)
    n = images.shape[0]
    if n == 0:
        raise DataError(f"data set {dataset!r}: split {split!r} has no images")
    layout = "npy" if isinstance(ds, ArrayDataset) else "folder"
    classes = list(getattr(ds, "classes", [str(i) for i in range(int(labels.max()) + 1)]))
    files = _file_names(ds, n, [int(y) for y in labels])
    with staged_output(out_dir) as stage:
        _write(stage, images, labels, names, sevs, size, seed, layout, classes, files, console)
        meta = {
            "dataset": dataset,
            "split": split,
            "size": size,
            "size_class": size_class(size),
            "seed": seed,
            "n": n,
            "severities": sevs,
            "corruptions": names,
            "layout": layout,
            "classes": classes,
            "frost_textures": frost_source() if "frost" in names else None,
            "urrlkit_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (stage / "meta.json").write_text(json.dumps(meta, indent=2))
    console.print(f"wrote {out_dir} ({layout} layout)", markup=False)
    return out_dir


def _write(out_dir: Path, images: torch.Tensor, labels: torch.Tensor, names: list[str], sevs: list[int],
           size: int, seed: int, layout: str, classes: list[str], files: list[str], console: Console) -> None:
    from PIL import Image

    n = images.shape[0]
    if layout == "npy":
        np.save(out_dir / "labels.npy", np.tile(labels.numpy().astype(np.int64), len(sevs)))
    for name in names:
        if layout == "npy":
            mm = np.lib.format.open_memmap(
                out_dir / f"{name}.npy", mode="w+", dtype=np.uint8, shape=(len(sevs) * n, size, size, 3)
            )
        for k, s in enumerate(sevs):
            for i in range(0, n, CHUNK):
                fn = functools.partial(corrupt, name=name, severity=s, seed=seed, start=i)
                y = corrupt_framed(images[i : i + CHUNK], size, fn)
                hwc = y.permute(0, 2, 3, 1).numpy()
                if layout == "npy":
                    mm[k * n + i : k * n + i + len(hwc)] = hwc
                else:
                    for j, img in enumerate(hwc):
                        folder = out_dir / name / str(s) / classes[int(labels[i + j])]
                        folder.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(img).save(folder / files[i + j], quality=JPEG_QUALITY)
        if layout == "npy":
            mm.flush()
            del mm
        console.print(f"{name}: {len(sevs)} severities × {n} images", markup=False)


def corrupted_batches(images: torch.Tensor, name: str, severity: int, seed: int,
                      batch_size: int = CHUNK) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (start, corrupted uint8 batch) over in-memory images, aligned to CHUNK for determinism."""
    step = max(CHUNK, (batch_size // CHUNK) * CHUNK)
    for i in range(0, images.shape[0], step):
        yield i, corrupt(images[i : i + step], name, severity, seed=seed, start=i)
