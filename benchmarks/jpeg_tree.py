"""An ImageNet-like JPEG tree from offline data, for the input-path benchmarks (pretrain.py --jpeg, augment.py
--jpeg): the bundled CIFAR-10 sample photographs upscaled (bicubic) to ImageNet's typical sizes and aspects
(mostly 500 × 375 / 375 × 500, some 500 × 333, 333 × 500, 400 × 400, 640 × 480) and saved as JPEG (quality 90,
4:2:0, as most ImageNet files are). Decoding cost follows the pixel count, so the timing is ImageNet's; the
content is blurrier than a real photo, which matters for nothing timed here.

    python benchmarks/jpeg_tree.py OUT [--images 2000] [--classes 10] [--val 0]
writes OUT/train/<wnid>/*.JPEG (and OUT/val/... with --val N per class); the `imagenet` data set reads it.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = [(500, 375)] * 4 + [(375, 500)] * 2 + [(500, 333), (333, 500), (400, 400), (640, 480)]


def _write(job: tuple[np.ndarray, tuple[int, int], bool, str]) -> None:
    img, size, mirror, path = job
    im = Image.fromarray(img[:, ::-1] if mirror else img).resize(size, Image.BICUBIC)
    im.save(path, quality=90)


def build_tree(root: Path, images: int = 2000, classes: int = 10, val_per_class: int = 0,
               processes: int | None = None) -> Path:
    """`root/train/n<class>/*.JPEG` (`images` in all, classes balanced) and `val_per_class` val images."""
    ref = resources.files("urrlkit.data") / "sample" / "cifar10-sample.npz"
    with resources.as_file(ref) as p, np.load(p) as arr:
        photos, labels = arr["train_images"], arr["train_labels"]
    jobs = []
    for split, n in (("train", images), ("val", val_per_class * classes)):
        for j in range(n):
            k = j % classes
            mine = np.flatnonzero(labels == k)
            i = mine[(j // classes) % len(mine)]
            folder = root / split / f"n{k:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            # Past the sample's photos, mirrored copies at other sizes: distinct files, distinct bytes.
            mirror = (j // classes // len(mine)) % 2 == 1
            jobs.append((photos[i], SIZES[(j * 7 + (split == "val")) % len(SIZES)], mirror,
                         str(folder / f"n{k:08d}_{j}.JPEG")))
    workers = processes or min(len(os.sched_getaffinity(0)), 16)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write, jobs, chunksize=32))
    else:
        for job in jobs:
            _write(job)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--val", type=int, default=0, help="val images per class")
    ap.add_argument("--processes", type=int, default=None)
    args = ap.parse_args()
    build_tree(args.out, args.images, args.classes, args.val, args.processes)
    print(f"wrote {args.images} training JPEGs under {args.out / 'train'}")


if __name__ == "__main__":
    main()
