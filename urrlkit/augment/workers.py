"""Making the views inside DataLoader workers: the CPU path of the family sampler, and the crops drawn on
original images (augment/crops.py) for file-backed data sets, on any device.

On a GPU the sampler runs on the device, after loading. On a CPU the cores are shared between augmentation
and training, and the batched ops scale poorly over intra-op threads (small tensors, many launches); one
single-threaded sampler per worker process, each on its own batches, uses the cores better and overlaps
augmentation with the training step — the way the reference pipelines feed their per-image transforms.

Every batch draws from its own generator, seeded from the run seed and the batch's image indices, so the
views do not depend on the number of workers, on which worker made the batch, or on a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from urrlkit.augment.crops import CropSpec, WithIndex, batch_seed, crop_groups, crop_views, new_batch
from urrlkit.augment.device_crops import EncodedBatch, decode_views, encode_groups, encoded_source
from urrlkit.augment.multiview import ViewSampler
from urrlkit.augment.sampler import FamilySampler, to_float
from urrlkit.augment.supervised import supervised_transform
from urrlkit.data.datasets import originals


class AugmentingCollate:
    """``collate_fn`` that stacks (image, index) items and returns ``(views, families, index)``.

    ``views`` is the list of the sampler's views, float32 (B, 3, s, s) (s: each view's group's size), ``families``
    the (views, B) family indices, as ``ViewSampler.__call__`` / ``FamilySampler.__call__`` return them. Picklable,
    so it travels to spawned workers.
    """

    def __init__(self, sampler: FamilySampler | ViewSampler, seed: int) -> None:
        self.sampler = ViewSampler.of(sampler)
        self.seed = seed

    def __call__(self, items: Sequence[tuple[Tensor, int]]) -> tuple[list[Tensor], Tensor, Tensor]:
        images = torch.stack([im for im, _ in items])
        index = torch.tensor([i for _, i in items], dtype=torch.int64)
        g = torch.Generator().manual_seed(batch_seed(self.seed, index))
        # One buffer per group (per size), written in place; in a worker in shared memory, so the views cross to
        # the main process without the copy that pickling a private tensor makes (≈ 4 % more views/s with 2
        # workers at 64 and 224 px).
        out = [new_batch(shape, torch.float32) for shape in self.sampler.out_shapes(images)]
        views, fam = self.sampler(images, g, out=out)
        return views, fam, index


class OriginalViewsCollate:
    """``collate_fn`` for (original image, index) items of any sizes (``data.originals``): every view draws its
    family (Eq. 2, per view and image), then its box on the original with that family's ``CropSpec`` in its view
    group, and is cut to its group's size in the worker (crops.crop_groups). Returns ``(views, families (views, B),
    index)`` with ``views`` the list of uint8 views (B, 3, s, s), group-major; the families' photometric stages then
    run batched on the training device (``ViewSampler.photometric``). ``photometric=True`` runs them here too, and
    the views are float32, as ``AugmentingCollate`` returns them (the CPU path).
    """

    def __init__(self, sampler: FamilySampler | ViewSampler, seed: int, photometric: bool = False) -> None:
        self.sampler = ViewSampler.of(sampler)
        self.seed = seed
        self.photometric = photometric
        self.specs = self.sampler.crop_specs()  # fails here, in the main process, for a family without a CropSpec

    def __call__(self, items: Sequence[tuple[Tensor, int]]) -> tuple[list[Tensor], Tensor, Tensor]:
        index = torch.tensor([i for _, i in items], dtype=torch.int64)
        g = torch.Generator().manual_seed(batch_seed(self.seed, index))
        b, sampler = len(items), self.sampler
        fam = sampler.draw_families(sampler.views * b, g)  # view-major: index v·B + i
        cuts = crop_groups([im for im, _ in items], sampler.split(fam), self.specs, sampler.sizes, g)
        fam = fam.view(sampler.views, b)
        if not self.photometric:
            views = [v for c, (n, s) in zip(cuts, sampler.shapes, strict=True)
                     for v in c.view(n, b, 3, s, s).unbind(0)]
            return views, fam, index
        out = [new_batch(tuple(c.shape), torch.float32) for c in cuts]
        return sampler.photometric(cuts, fam, g, out=out), fam, index


class SupervisedCropCollate:
    """``collate_fn`` for supervised training crops on original images (``crops.WithIndex`` items): per image
    ``spec`` (default RandomResizedCrop(size, scale 0.08–1) + flip, as ``main_lincls.py`` and the transfer
    pipelines train) → (uint8 (B, 3, size, size), labels). Seeded per batch from ``seed`` and the image indices,
    so the crops do not depend on the worker count or a resume."""

    def __init__(self, size: int, seed: int, spec: CropSpec | None = None) -> None:
        self.size = size
        self.seed = seed
        self.spec = spec or CropSpec("rrc", scale=(0.08, 1.0))

    def __call__(self, items: Sequence[tuple[Any, int, int]]) -> tuple[Any, Tensor]:
        index = torch.tensor([i for _, _, i in items], dtype=torch.int64)
        g = torch.Generator().manual_seed(batch_seed(self.seed, index))
        fam = torch.zeros(len(items), dtype=torch.int64)
        return self.cut([im for im, _, _ in items], fam, g), torch.tensor([y for _, y, _ in items], dtype=torch.int64)

    def cut(self, images: list[Any], fam: Tensor, g: torch.Generator) -> Any:
        return crop_views(images, fam, [self.spec], self.size, g)


class SupervisedEncodedCollate(SupervisedCropCollate):
    """``SupervisedCropCollate`` for ``device_crops.Encoded`` items: the same boxes from the same seed, the JPEGs
    decoded and cut on the training device by the step's transform (``decode_views``) → (EncodedBatch, labels)."""

    def cut(self, images: list[Any], fam: Tensor, g: torch.Generator) -> EncodedBatch:
        return encode_groups(images, [fam], [[self.spec]], [self.size], g)


def supervised_source(ds: Dataset, kind: str, image_size: int, crop_from: str, seed: int,
                      decode_on_device: bool = False
                      ) -> tuple[Dataset, Callable | None, Callable[..., Tensor]]:
    """What a supervised stage (linear evaluation, fine-tuning) loads, its collate_fn, and the transform its
    training step applies to a batch on the device.

    ``crop_flip`` above 64 px on a file-backed data set with ``crop_from = "original"``: the originals, cut by
    ``SupervisedCropCollate`` (RandomResizedCrop 0.08–1 + flip, seeded from ``seed`` and the indices) in the
    workers, so the step only converts to float; with ``decode_on_device`` (data.decode resolved) the workers read
    the JPEGs' bytes and draw the same boxes (``SupervisedEncodedCollate``), the step decodes and cuts them on the
    device (augment/device_crops.py). Otherwise the stored images and ``supervised_transform`` (pad-crop at
    ≤ 64 px, as the CIFAR recipes) on the device.
    """
    if kind == "crop_flip" and image_size > 64 and crop_from == "original":
        if decode_on_device:
            encoded = encoded_source(ds)
            if encoded is not None:
                return WithIndex(encoded), SupervisedEncodedCollate(image_size, seed), _decode_float
        full = originals(ds)
        if full is not None:
            return WithIndex(full), SupervisedCropCollate(image_size, seed), _as_float
    return ds, None, supervised_transform(kind, image_size, train=True)


def _as_float(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    return to_float(x)


def _decode_float(batch: EncodedBatch, generator: torch.Generator | None = None) -> Tensor:
    return to_float(decode_views(batch))
