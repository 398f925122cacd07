"""Where pretraining's views come from, as one object: the loader's data set and collate_fn, fit's one-batch-ahead
transform, and the step's ``views(batch, generator)``, whichever of the four paths makes them.

1. stored images, views made on the device: the loader yields (images, index), ``views`` runs the sampler with the
   step's generator (one per process, checkpointed);
2. stored images, views made in the DataLoader workers (``AugmentingCollate``);
3. file-backed data sets with ``crop_from = "original"``: every view's box drawn on the decoded original and cut in
   the workers (``OriginalViewsCollate``), the photometric stages in the workers too (``in_workers``) or on the
   device by ``views``;
4. the same with JPEGs decoded on the device (``decode_on_device``, resolved by ``device_crops.decode_on_device``):
   the workers read bytes and draw the boxes (``EncodedViewsCollate``), ``prepare`` decodes, cuts and augments one
   batch ahead, seeded per batch by the worker, so neither prefetching nor a resume changes the views.

Worker batches seed their generator from the run seed and their image indices (``crops.batch_seed``), so their views
depend neither on the worker count nor on a resume. The sampler may be a ``FamilySampler`` (one group of its views)
or a ``ViewSampler`` of several groups (augment/multiview.py): every path cuts each view to its group's size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from urrlkit.augment.device_crops import (
    EncodedBatch,
    EncodedViewsCollate,
    decode_groups,
    decode_on_device,
    encoded_source,
)
from urrlkit.augment.multiview import ViewSampler
from urrlkit.augment.sampler import FamilySampler
from urrlkit.augment.workers import AugmentingCollate, OriginalViewsCollate
from urrlkit.data.datasets import dataset_len, originals
from urrlkit.errors import DataError, UrrlError

Views = tuple[list[Tensor], Tensor, Tensor]  # views (group-major), families (views, B), image indices (B,)


class IndexedImages(Dataset):
    """Yields (image, index) of a data set of (image, ...) items: worker batches seed by the image indices, and
    memory-bank pretexts need to know which image each view came from."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return dataset_len(self.ds)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.ds[i][0], i


class ViewSource:
    """The views of ``train_dataset`` as pretraining draws them, from plain values.

    ``crop_from``: "original" cuts file-backed sets' views from the decoded originals (other sets have none and use
    their stored images), "stored" always uses the stored images; ``decode_on_device``: data.decode resolved
    (``resolve_decode``); ``in_workers``: data.augment_in resolved to the workers.

    ``dataset`` and ``collate_fn`` (None: default collation) go to the DataLoader; ``prepare`` (None unless the
    JPEGs are decoded on the device) to ``fit``; the step calls ``views(batch, generator)``; ``describe()`` is
    the start log's record of the path.
    """

    def __init__(self, train_dataset: Dataset, sampler: FamilySampler | ViewSampler, seed: int,
                 crop_from: str = "original", decode_on_device: bool = False, in_workers: bool = False) -> None:
        if crop_from not in ("original", "stored"):
            raise ValueError(f"crop_from must be 'original' or 'stored', got {crop_from!r}")
        self.sampler = ViewSampler.of(sampler)
        self.seed = seed
        self.in_workers = in_workers
        full = originals(train_dataset) if crop_from == "original" else None
        if full is not None and decode_on_device and in_workers:  # where device_crops.decode_on_device refuses
            raise UrrlError("data.decode = 'device' needs the views made on the device; set data.augment_in = "
                            "'device'")
        encoded = encoded_source(train_dataset) if full is not None and decode_on_device else None
        self.collate_fn: Callable[[list[Any]], Any] | None
        if encoded is not None:  # 4: bytes and boxes in the workers, the rest in prepare
            self.path, source = "encoded", encoded
            self.collate_fn = EncodedViewsCollate(self.sampler, seed)
        elif full is not None:  # 3: cut from the originals in the workers
            self.path, source = "original", full
            self.collate_fn = OriginalViewsCollate(self.sampler, seed, photometric=in_workers)
        else:  # 1, 2: the stored images
            self.path, source = "stored", train_dataset
            self.collate_fn = AugmentingCollate(self.sampler, seed) if in_workers else None
        self.dataset = IndexedImages(source)
        self.prepare: Callable[[Any], Views] | None = self.decode if self.path == "encoded" else None

    def decode(self, batch: tuple[EncodedBatch, Tensor, Tensor]) -> Views:
        """Path 4's batch decoded, cut and augmented where ``batch.to`` sent it (fit's prepare; on CUDA one batch
        ahead on a side stream), from the generator the worker seeded for this batch."""
        enc, fam, index = batch
        device = torch.device(enc.device)
        gen = torch.Generator(device=device).manual_seed(enc.photo_seed)
        return self.sampler.photometric(decode_groups(enc, device), fam, gen), fam, index

    def views(self, batch: Any, generator: torch.Generator) -> Views:
        """A loader batch (after ``prepare``, where there is one) → (views, families (views, B), index). Only
        the device paths draw from ``generator`` (the step's, on the training device)."""
        if self.path == "encoded":
            return self.decode(batch) if isinstance(batch[0], EncodedBatch) else batch
        if self.in_workers:  # made whole in the workers
            views, fam, index = batch
            return list(views), fam, index
        if self.path == "original":  # cut in the workers, the photometric stages here
            cuts, fam, index = batch
            return self.sampler.photometric(cuts, fam, generator), fam, index
        images, index = batch
        views, fam = self.sampler(images, generator)
        return views, fam, index

    def describe(self) -> dict[str, str]:
        """The start log's keys: where the views are augmented, what they are cut from, where JPEGs decode."""
        return {"augment_in": "workers" if self.in_workers else "device",
                "crops_from": "stored" if self.path == "stored" else "original",
                "decode": "device" if self.path == "encoded" else "cpu"}

    def __repr__(self) -> str:
        return f"ViewSource({self.path}, {self.describe()}, {self.sampler!r})"


def resolve_decode(decode: str, device_type: str, in_workers: bool) -> bool:
    """data.decode as ViewSource's ``decode_on_device``: ``device_crops.decode_on_device``, except that "device"
    with views made in the workers is refused by ViewSource, and only where there are originals to decode (as
    pretraining refused it before: an array data set never decodes)."""
    return decode == "device" or decode_on_device(decode, device_type, in_workers)


@dataclass
class ViewsPreview:
    """The views of a batch of images, as the workers make them: ``views`` float32 (n, 3, s, s) in [0, 1], one per
    view, group-major (s: its group's size, ``sizes``); ``families`` (views, n) into ``names``; ``images`` what they
    were cut from (the decoded originals, or the stored images); ``groups``: (name, views, size) of each group."""

    views: list[Tensor]
    families: Tensor
    index: Tensor
    images: list[Tensor]
    names: list[str]
    sizes: list[int]
    groups: list[tuple[str, int, int]]
    crops_from: str


def preview_views(train_dataset: Dataset, sampler: FamilySampler | ViewSampler, seed: int,
                  crop_from: str = "original", images: int = 8) -> ViewsPreview:
    """The views pretraining's loader makes for one batch of the first ``images`` training images under run seed
    ``seed`` (the per-batch seeding of the workers), every stage made on the CPU: from the decoded originals for
    file-backed sets with crop_from = "original", else from the stored images. Device decoding cuts the same
    boxes (within PIL's rounding), so the preview does not depend on data.decode."""
    if images < 1:
        raise ValueError(f"images must be ≥ 1, got {images}")
    source = ViewSource(train_dataset, sampler, seed, crop_from, decode_on_device=False, in_workers=True)
    n = min(images, dataset_len(source.dataset))
    if n == 0:
        raise DataError("the data set has no training images")
    items = [source.dataset[i] for i in range(n)]
    assert source.collate_fn is not None  # in_workers: every path collates
    views, fam, index = source.collate_fn(items)
    vs = source.sampler
    groups = [(g.name, n_views, size) for g, (n_views, size) in zip(vs.groups, vs.shapes, strict=True)]
    return ViewsPreview(views, fam, index, [im for im, _ in items], vs.names, vs.view_sizes, groups,
                        source.describe()["crops_from"])
