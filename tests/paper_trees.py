"""TEST FIXTURE BUILDERS: small on-disk trees in the paper's data layouts, made of real photographs.

The images are the CIFAR-10 photographs bundled with urrlkit, upscaled to ImageNet-like sizes and aspect
ratios (4:3, 3:4, 3:2, 1:1, ...) and saved as JPEG, so every file-backed code path (decoding, crop boxes drawn on
the original image, Resize(256) + CenterCrop(224)) sees what it sees on ImageNet, only smaller.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

# (width, height): landscape and portrait photos of the usual camera aspects, and one square.
SIZES = [(320, 240), (240, 320), (300, 200), (200, 300), (256, 256), (375, 500), (500, 333)]

# The 15 ImageNet-C corruptions (Hendrycks & Dietterich 2019), as hendrycks/robustness names the folders.
IMAGENET_C = [
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
]


def sample_photos() -> tuple[np.ndarray, np.ndarray]:
    """The bundled CIFAR-10 sample's training photographs (N, 32, 32, 3) uint8 and labels."""
    ref = resources.files("urrlkit.data") / "sample" / "cifar10-sample.npz"
    with resources.as_file(ref) as path, np.load(path) as arr:
        return arr["train_images"], arr["train_labels"]


def _photo(img: np.ndarray, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(img).resize(size, Image.BICUBIC)


def imagenet_tree(root: Path, classes: int = 4, train_per_class: int = 12, val_per_class: int = 4) -> Path:
    """`root/train/<wnid>/*.JPEG` and `root/val/<wnid>/*.JPEG` (ImageNet's ImageFolder layout) of non-square
    JPEGs; class k holds photographs of CIFAR class k. Returns root."""
    images, labels = sample_photos()
    sizes = iter(SIZES * 1000)
    for split, per_class, offset in (("train", train_per_class, 0), ("val", val_per_class, train_per_class)):
        for k in range(classes):
            folder = root / split / f"n{k:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            mine = np.flatnonzero(labels == k)[offset:offset + per_class]
            for j, i in enumerate(mine):
                _photo(images[i], next(sizes)).save(folder / f"n{k:08d}_{j}.JPEG", quality=90)
    return root


def imagenet_c_tree(root: Path, val_root: Path, severities: tuple[int, ...] = (1, 2, 3, 4, 5)) -> Path:
    """`root/<corruption>/<severity>/<wnid>/*.JPEG` at 224 px, the official ImageNet-C layout: each image is
    Resize(256) + CenterCrop(224) of a val image (as create_c/make_imagenet_c.py prepares them) with Gaussian
    noise whose strength grows with the severity (a stand-in perturbation: only the layout and the framing are
    under test here)."""
    rng = np.random.default_rng(0)
    for wnid_dir in sorted(p for p in val_root.iterdir() if p.is_dir()):
        for f in sorted(wnid_dir.iterdir()):
            with Image.open(f) as im:
                w, h = im.size
                s = 256 / min(w, h)
                im = im.convert("RGB").resize((round(w * s), round(h * s)), Image.BILINEAR)
                left, top = (im.width - 224) // 2, (im.height - 224) // 2
                base = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32)
            for c in IMAGENET_C:
                for sev in severities:
                    out = root / c / str(sev) / wnid_dir.name
                    out.mkdir(parents=True, exist_ok=True)
                    noisy = base + rng.normal(0, 12 * sev, base.shape)
                    Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(out / f.name, quality=85)
    return root
