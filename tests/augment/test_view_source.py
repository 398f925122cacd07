"""ViewSource (augment/view_source.py): one object from a pretraining loader batch to views, on each of the four
paths. With a FamilySampler, or a ViewSampler of one group, every path gives bit for bit what the path gave before
view groups: the references below restate that code (pretext/workflow.py view_source and its step, the collates as
they were) with the single-group engine (FamilySampler, crops.crop_views, crops.plan_views,
device_crops.resample_boxes). The device decode path runs on the CPU (torchvision decodes JPEGs there too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from paper_trees import imagenet_tree
from torch.utils.data import DataLoader, Subset

from urrlkit.augment import FamilySampler, build_sampler
from urrlkit.augment.crops import batch_seed, crop_views, plan_views
from urrlkit.augment.device_crops import EncodedBatch, decode_on_device, resample_boxes
from urrlkit.augment.multiview import ViewSampler, build_view_sampler
from urrlkit.augment.view_source import IndexedImages, ViewSource, preview_views, resolve_decode
from urrlkit.data import DataRequest, build, originals
from urrlkit.data.datasets import FileDataset, load_image
from urrlkit.errors import UrrlError
from urrlkit.views import ViewGroup


@dataclass(frozen=True)
class Spec:
    """One entry of a weighted family list (what a recipe's FamilySpec carries)."""

    name: str
    weight: float = 1.0
    params: dict[str, object] = field(default_factory=dict)


URRL = [Spec("augmix_allop", 0.5), Spec("moco_v2", 0.5)]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> FileDataset:
    """Non-square ImageNet-layout JPEGs (all 3-channel: every one decodes on the device path)."""
    root = imagenet_tree(tmp_path_factory.mktemp("views"), classes=2, train_per_class=4, val_per_class=0)
    paths = sorted((root / "train").rglob("*.JPEG"))
    return FileDataset(paths, [int(p.parent.name[1:]) for p in paths], ["a", "b"], size=64)


@pytest.fixture(scope="module")
def stored() -> object:
    return build("cifar10-sample", DataRequest(None, "train", 32))


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b, strict=True))


def one_group(size: int, views: int = 2) -> tuple[FamilySampler, ViewSampler]:
    return build_sampler(URRL, size, views), build_view_sampler(URRL, size, [ViewGroup(views)])


def test_stored_images_on_the_device(stored: object) -> None:
    fs, vs = one_group(32, views=3)
    for sampler in (fs, vs):
        src = ViewSource(stored, sampler, seed=1, crop_from="original", decode_on_device=True, in_workers=False)
        assert src.collate_fn is None and src.prepare is None  # an array set has no originals, no files
        assert src.describe() == {"augment_in": "device", "crops_from": "stored", "decode": "cpu"}
        batch = next(iter(DataLoader(src.dataset, batch_size=8)))
        views, fam, index = src.views(batch, torch.Generator().manual_seed(4))
        ref, ref_fam = fs(batch[0], torch.Generator().manual_seed(4))  # the step: sampler(images, aug_gen)
        assert same(views, ref) and torch.equal(fam, ref_fam) and torch.equal(index, torch.arange(8))


@pytest.mark.parametrize("crop_from", ["original", "stored"])
def test_stored_images_in_the_workers(stored: object, crop_from: str) -> None:
    fs, vs = one_group(32)
    src = ViewSource(stored, vs, seed=7, crop_from=crop_from, in_workers=True)
    assert src.describe() == {"augment_in": "workers", "crops_from": "stored", "decode": "cpu"}
    items = [src.dataset[i] for i in (5, 3, 9, 0)]
    views, fam, index = src.views(src.collate_fn(items), torch.Generator())
    g = torch.Generator().manual_seed(batch_seed(7, index))  # AugmentingCollate: the batch's own generator
    ref, ref_fam = fs(torch.stack([stored[i][0] for i in (5, 3, 9, 0)]), g)
    assert same(views, ref) and torch.equal(fam, ref_fam) and views[0].dtype == torch.float32


@pytest.mark.parametrize("in_workers", [False, True])
def test_crops_of_the_originals(photos: FileDataset, in_workers: bool) -> None:
    fs, vs = one_group(96)
    src = ViewSource(photos, vs, seed=5, crop_from="original", in_workers=in_workers)
    assert src.describe() == {"augment_in": "workers" if in_workers else "device", "crops_from": "original",
                              "decode": "cpu"}
    items = [src.dataset[i] for i in range(len(photos))]
    batch = src.collate_fn(items)
    views, fam, index = src.views(batch, torch.Generator().manual_seed(2))
    # OriginalViewsCollate as it was: families, then the boxes per family (crop_views), then the photometric stage
    # from the same generator in the workers, or from the step's on the device.
    g = torch.Generator().manual_seed(batch_seed(5, index))
    ref_fam = fs.draw_families(2 * len(items), g)
    cut = crop_views([im for im, _ in items], ref_fam, fs.crop_specs(), 96, g)
    ref_fam = ref_fam.view(2, -1)
    if in_workers:
        ref = fs.photometric(cut, ref_fam, g)
    else:
        assert same(batch[0], list(cut.view(2, -1, 3, 96, 96).unbind(0)))
        ref = fs.photometric(list(cut.view(2, -1, 3, 96, 96).unbind(0)), ref_fam, torch.Generator().manual_seed(2))
    assert same(views, ref) and torch.equal(fam, ref_fam)


def test_jpegs_decoded_on_the_device(photos: FileDataset) -> None:
    from torchvision.io import ImageReadMode, decode_jpeg

    fs, vs = one_group(96)
    src = ViewSource(photos, vs, seed=3, crop_from="original", decode_on_device=True)
    assert src.describe() == {"augment_in": "device", "crops_from": "original", "decode": "device"}
    assert src.prepare is not None
    # 96 px: every family's crop is a box (AugMix pads at ≤ 64 px, cut in the workers), all decoded here.
    items = [src.dataset[i] for i in range(len(photos))]
    batch = src.collate_fn(items)
    assert isinstance(batch[0], EncodedBatch)
    views, fam, index = src.prepare(batch)  # fit's one-batch-ahead transform
    assert same(src.views(batch, torch.Generator())[0], views)  # views() without prepare does the same
    assert src.views((views, fam, index), torch.Generator())[0] is views  # and passes a prepared batch on
    # EncodedViewsCollate and pretrain's decode_batch as they were: families, boxes per family, the photometric
    # seed; every box resized with PIL's filter on the device, the photometric stage from that seed.
    b = len(items)
    g = torch.Generator().manual_seed(batch_seed(3, index))
    ref_fam = fs.draw_families(2 * b, g)
    images = [decode_jpeg(torch.frombuffer(bytearray(Path(p).read_bytes()), dtype=torch.uint8),
                          mode=ImageReadMode.RGB) for p in photos.files]
    plan = plan_views(torch.tensor([im.shape[-2] for im in images]), torch.tensor([im.shape[-1] for im in images]),
                      ref_fam, fs.crop_specs(), 96, g)
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    assert batch[0].photo_seed == seed and torch.equal(batch[0].top, plan.top) and not batch[0].cpu_rows.numel()
    boxes = [t.view(2, b).t() for t in (plan.top, plan.left, plan.height, plan.width, plan.flip)]
    cuts = resample_boxes(images, *boxes, size=96).transpose(0, 1).reshape(2 * b, 3, 96, 96)
    ref = fs.photometric(cuts, ref_fam.view(2, b), torch.Generator().manual_seed(seed))
    assert same(views, ref) and torch.equal(fam, ref_fam.view(2, b))


def test_the_loader_batches_through_the_source(photos: FileDataset) -> None:
    """DataLoader(source.dataset, collate_fn=source.collate_fn) → source.views, as the training step calls it:
    the same views with and without worker processes."""
    _, vs = one_group(64)
    src = ViewSource(photos, vs, seed=0, crop_from="original", decode_on_device=True)

    def run(workers: int) -> list[list[torch.Tensor]]:
        loader = DataLoader(src.dataset, batch_size=4, num_workers=workers, collate_fn=src.collate_fn)
        return [src.views(b, torch.Generator())[0] for b in loader]

    inline, pooled = run(0), run(1)
    assert len(inline) == 2 and all(same(a, b) for a, b in zip(inline, pooled, strict=True))


def test_items_are_image_and_index(photos: FileDataset, stored: object) -> None:
    ds = IndexedImages(originals(photos))
    image, i = ds[3]
    assert i == 3 and torch.equal(image, load_image(photos.files[3], None)) and len(ds) == len(photos)
    assert ViewSource(stored, one_group(32)[1], 0, "stored").dataset[2][1] == 2


def test_bad_settings_are_refused(photos: FileDataset) -> None:
    _, vs = one_group(64)
    with pytest.raises(ValueError, match="crop_from"):
        ViewSource(photos, vs, 0, crop_from="square")
    with pytest.raises(UrrlError, match=r"data\.augment_in"):
        ViewSource(photos, vs, 0, decode_on_device=True, in_workers=True)
    stored_path = ViewSource(photos, vs, 0, crop_from="stored", decode_on_device=True, in_workers=True)
    assert stored_path.describe()["crops_from"] == "stored"  # nothing to decode: the stored images


def test_decode_setting_resolves_as_pretraining_did(stored: object) -> None:
    for decode in ("auto", "cpu", "device"):
        for device in ("cpu", "cuda"):
            for workers in (False, True):
                if decode == "device" and workers:  # refused by ViewSource where there are originals (above)
                    assert resolve_decode(decode, device, workers)
                    assert ViewSource(stored, one_group(32)[1], 0, decode_on_device=True, in_workers=True).describe() \
                        == {"augment_in": "workers", "crops_from": "stored", "decode": "cpu"}
                else:
                    assert resolve_decode(decode, device, workers) == decode_on_device(decode, device, workers)


def test_preview_is_the_workers_batch(photos: FileDataset, stored: object) -> None:
    vs = build_view_sampler(URRL, 64, [ViewGroup(2), ViewGroup(3, size=24, scale=(0.05, 0.4), name="local")])
    p = preview_views(photos, vs, seed=4, images=3)
    src = ViewSource(photos, vs, 4, in_workers=True)
    views, fam, _ = src.collate_fn([src.dataset[i] for i in range(3)])
    assert same(p.views, views) and torch.equal(p.families, fam) and p.crops_from == "original"
    assert [v.shape[-1] for v in p.views] == p.sizes == [64, 64, 24, 24, 24]
    assert p.groups == [("views", 2, 64), ("local", 3, 24)] and p.names == ["augmix_allop", "moco_v2"]
    full = originals(photos)
    assert all(torch.equal(im, full[i][0]) for i, im in enumerate(p.images))  # the decoded originals
    few = Subset(stored, range(5))
    q = preview_views(few, build_sampler(URRL, 32, 2), seed=4, images=8)  # at most the whole set
    assert q.crops_from == "stored" and q.views[0].shape == (5, 3, 32, 32) and torch.equal(q.images[1], few[1][0])
    with pytest.raises(ValueError, match="images"):
        preview_views(stored, vs, 0, images=0)
