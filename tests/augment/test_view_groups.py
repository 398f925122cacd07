"""View groups (urrlkit/views.py, augment/multiview.py): views of several sizes, crop scales and family parameters
on every path, each view's family drawn by Eq. 2 — DINO's local crops included."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import pytest
import torch
from paper_trees import imagenet_tree
from PIL import Image
from torch.utils.data import DataLoader

from urrlkit.augment import build_sampler, geometry
from urrlkit.augment.crops import CropSpec, batch_seed, crop_views
from urrlkit.augment.device_crops import decode_groups, decode_views
from urrlkit.augment.multiview import GroupCrop, ViewSampler, build_view_sampler
from urrlkit.augment.view_source import ViewSource
from urrlkit.data import DataRequest, build
from urrlkit.data.datasets import FileDataset
from urrlkit.errors import UrrlError
from urrlkit.views import GLOBAL_SCALE, LOCAL_SCALE, ViewGroup, local_crop_size, multi_crop, view_sizes


@dataclass(frozen=True)
class Spec:
    name: str
    weight: float = 1.0
    params: dict[str, object] = field(default_factory=dict)


URRL = [Spec("augmix_allop", 0.5), Spec("moco_v2", 0.5)]
# Families told apart by the views themselves: moco_v2 with certain grayscale and no other colour op makes grey
# views (R = G = B), identity keeps the colours, whatever the crop.
GREY = [Spec("identity", 0.5), Spec("moco_v2", 0.5, {"grayscale_p": 1.0, "jitter_p": 0.0, "blur_p": 0.0})]
DINO = multi_crop(32, local_views=3)  # 2 global views at 32 px, 3 local at 14 px


@pytest.fixture(scope="module")
def stored() -> torch.Tensor:
    ds = build("cifar10-sample", DataRequest(None, "train", 32))
    return torch.stack([ds[i][0] for i in range(12)])


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> FileDataset:
    """Non-square JPEGs and one PNG (decoded in the worker on the device path)."""
    root = imagenet_tree(tmp_path_factory.mktemp("groups"), classes=2, train_per_class=3, val_per_class=0)
    first = next((root / "train" / "n00000000").glob("*.JPEG"))
    Image.open(first).convert("RGB").resize((180, 130)).save(first.parent / "z.png")
    paths = sorted(p for p in (root / "train").rglob("*") if p.is_file())
    return FileDataset(paths, [0] * len(paths), ["a"], size=64)


def grey(v: torch.Tensor) -> torch.Tensor:
    """Per image of a (B, 3, s, s) batch: all channels equal."""
    return (v[:, 0] == v[:, 1]).flatten(1).all(1) & (v[:, 1] == v[:, 2]).flatten(1).all(1)


def test_dino_defaults_and_helpers() -> None:
    groups = multi_crop(224)  # main_dino.py: 2 × 224 px at (0.4, 1), 8 × 96 px at (0.05, 0.4)
    assert [(g.count, g.size_at(224), g.scale) for g in groups] == [(2, 224, (0.4, 1.0)), (8, 96, (0.05, 0.4))]
    assert GLOBAL_SCALE == (0.4, 1.0) and LOCAL_SCALE == (0.05, 0.4) and local_crop_size(32) == 14
    assert view_sizes(DINO, 32) == [32, 32, 14, 14, 14] and len(multi_crop(32, local_views=0)) == 1


def test_views_of_every_group_with_families_drawn_per_view(stored: torch.Tensor) -> None:
    vs = build_view_sampler(GREY, 32, DINO)
    assert vs.views == 5 and vs.sizes == [32, 14] and vs.view_sizes == [32, 32, 14, 14, 14]
    views, fam = vs(stored, torch.Generator().manual_seed(0))
    assert [tuple(v.shape) for v in views] == [(12, 3, 32, 32)] * 2 + [(12, 3, 14, 14)] * 3
    assert fam.shape == (5, 12) and all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in views)
    for v, f in zip(views, fam, strict=True):  # every view, local ones too, is its own family's (Eq. 2)
        assert torch.equal(grey(v), f == 1)
    assert fam[2:].unique().numel() == 2  # both families among the local crops
    g = torch.Generator().manual_seed(0)
    assert torch.equal(vs.draw_families(60, g), fam.flatten())  # all views' families first, in one draw


def test_the_group_crop_replaces_each_familys_own(stored: torch.Tensor) -> None:
    vs = build_view_sampler(URRL, 32, [ViewGroup(2), ViewGroup(2, size=16, scale=(0.05, 0.4))])
    own, local = vs.crop_specs()
    assert own == build_sampler(URRL, 32).crop_specs() and own[0].kind == "pad"  # AugMix's CIFAR crop
    assert local == [CropSpec("rrc", (0.05, 0.4), (3 / 4, 4 / 3), flip=True)] * 2
    moco = vs.samplers[1].families[1]
    assert isinstance(moco, GroupCrop) and moco.family.image_size == 16
    # RandomResizedCrop(16, scale) + flip of the stored image, then the family's photometric stage.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x = stored.float() / 255
    cut = geometry.random_resized_crop(x, 16, g2, scale=(0.05, 0.4)).clamp_(0, 1)
    assert torch.equal(moco(x, g1), moco.family.photometric(cut, g2))
    assert not build_view_sampler(GREY, 32, [ViewGroup(1, scale=(0.5, 1))]).crop_specs()[0][0].flip  # identity's


def test_group_params_merge_over_the_recipes(stored: torch.Tensor) -> None:
    specs = [Spec("augmix_allop", 0.5, {"severity": 2}), Spec("moco_v2", 0.5, {"grayscale_p": 0.3})]
    groups = [ViewGroup(1, params={"moco_v2": {"blur_p": 1.0}}, name="t"),
              ViewGroup(1, params={"moco_v2": {"blur_p": 0.1}}, name="t_prime")]
    vs = build_view_sampler(specs, 32, groups)
    (a0, m0), (a1, m1) = (s.families for s in vs.samplers)
    assert (m0.blur_p, m1.blur_p, m0.grayscale_p, m1.grayscale_p) == (1.0, 0.1, 0.3, 0.3)
    assert a0.severity == a1.severity == 2 and specs[1].params == {"grayscale_p": 0.3}  # not written into
    views, fam = vs(stored, torch.Generator().manual_seed(1))
    assert len(views) == 2 and fam.shape == (2, 12)
    with pytest.raises(UrrlError, match=r"'byol'.*augmix_allop, moco_v2"):
        build_view_sampler(specs, 32, [ViewGroup(2, params={"byol": {"blur_p": 1.0}})])
    with pytest.raises(UrrlError, match=r"group 'x'.*moco_v2"):
        build_view_sampler(specs, 32, [ViewGroup(2, params={"moco_v2": {"blur": 1.0}}, name="x")])


def test_one_group_is_the_family_sampler(stored: torch.Tensor) -> None:
    for chunk in (8.0, 0.05):  # 0.05 MiB: several family calls per group
        fs = build_sampler(URRL, 32, views=3, chunk_mib=chunk)
        vs = build_view_sampler(URRL, 32, [ViewGroup(3)], chunk_mib=chunk)
        a, fa = fs(stored, torch.Generator().manual_seed(5))
        b, fb = vs(stored, torch.Generator().manual_seed(5))
        assert torch.equal(fa, fb) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert ViewSampler.of(fs).samplers[0] is fs and ViewSampler.of(vs) is vs


def test_photometric_takes_group_batches_or_views(stored: torch.Tensor) -> None:
    vs = build_view_sampler(URRL, 32, [ViewGroup(2), ViewGroup(1, size=16)])
    fam = vs.draw_families(36, torch.Generator().manual_seed(0)).view(3, 12)
    big = stored.repeat(2, 1, 1, 1)
    small = stored[:, :, 8:24, 8:24].contiguous()
    by_group = vs.photometric([big, small], fam, torch.Generator().manual_seed(1))
    by_view = vs.photometric([stored, stored, small], fam, torch.Generator().manual_seed(1))
    assert [v.shape[-1] for v in by_group] == [32, 32, 16]
    assert all(torch.equal(x, y) for x, y in zip(by_group, by_view, strict=True))
    with pytest.raises(ValueError, match="list"):
        vs.photometric(big, fam, torch.Generator())


def test_worker_views_in_groups_match_the_device_path(stored: torch.Tensor) -> None:
    ds = build("cifar10-sample", DataRequest(None, "train", 32))
    vs = build_view_sampler(URRL, 32, DINO)
    src = ViewSource(ds, vs, seed=9, crop_from="stored", in_workers=True)

    def batches(workers: int) -> list[tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]]:
        loader = DataLoader(src.dataset, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(0),
                            num_workers=workers, collate_fn=src.collate_fn)
        return [src.views(b, torch.Generator()) for b, _ in zip(loader, range(2), strict=False)]

    for (views, fam, index), (views2, _, _) in zip(batches(0), batches(1), strict=True):
        assert all(torch.equal(a, b) for a, b in zip(views, views2, strict=True))  # whatever the worker count
        ref, ref_fam = vs(torch.stack([ds[int(i)][0] for i in index]), torch.Generator().manual_seed(
            batch_seed(9, index)))
        assert torch.equal(fam, ref_fam) and all(torch.equal(a, b) for a, b in zip(views, ref, strict=True))
        assert [v.shape[-1] for v in views] == [32, 32, 14, 14, 14]


def test_original_crops_in_groups(photos: FileDataset) -> None:
    vs = build_view_sampler(URRL, 96, [ViewGroup(2, scale=(0.4, 1)), ViewGroup(3, size=40, scale=(0.05, 0.4))])
    src = ViewSource(photos, vs, seed=2, crop_from="original")
    items = [src.dataset[i] for i in range(len(photos))]
    cuts, fam, index = src.collate_fn(items)
    assert [tuple(c.shape[-3:]) for c in cuts] == [(3, 96, 96)] * 2 + [(3, 40, 40)] * 3
    assert all(c.dtype == torch.uint8 for c in cuts) and fam.shape == (5, len(items))
    # Group by group from the batch's generator, each as crop_views draws one group's boxes.
    g = torch.Generator().manual_seed(batch_seed(2, index))
    flat = vs.draw_families(5 * len(items), g)
    b = len(items)
    first = crop_views([im for im, _ in items], flat[:2 * b], vs.crop_specs()[0], 96, g)
    second = crop_views([im for im, _ in items], flat[2 * b:], vs.crop_specs()[1], 40, g)
    assert torch.equal(torch.cat(cuts[:2]), first) and torch.equal(torch.cat(cuts[2:]), second)
    views, _, _ = src.views((cuts, fam, index), torch.Generator().manual_seed(0))
    ref = vs.photometric([first, second], fam, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(views, ref, strict=True))
    worker_views, _, _ = ViewSource(photos, vs, seed=2, in_workers=True).collate_fn(items)
    assert [v.dtype for v in worker_views] == [torch.float32] * 5 and worker_views[4].shape[-1] == 40


def test_device_decoded_groups_match_the_workers_crops(photos: FileDataset) -> None:
    vs = build_view_sampler(URRL, 96, [ViewGroup(2), ViewGroup(2, size=48, scale=(0.05, 0.4))])
    dev = ViewSource(photos, vs, seed=6, decode_on_device=True)
    cpu = ViewSource(photos, vs, seed=6)
    enc, fam, index = dev.collate_fn([dev.dataset[i] for i in range(len(photos))])
    cuts, fam_cpu, _ = cpu.collate_fn([cpu.dataset[i] for i in range(len(photos))])
    assert torch.equal(fam, fam_cpu) and enc.groups == ((2, 96), (2, 48))
    decoded = decode_groups(enc, "cpu")
    assert [tuple(d.shape) for d in decoded] == [(2 * len(photos), 3, 96, 96), (2 * len(photos), 3, 48, 48)]
    ref = [torch.cat(cuts[:2]), torch.cat(cuts[2:])]
    png = torch.tensor([p.suffix == ".png" for p in photos.files]).repeat(2)
    for ours, theirs in zip(decoded, ref, strict=True):
        diff = (ours.int() - theirs.int()).abs()
        assert diff.max() <= 2 and diff.float().mean() < 0.05  # PIL's bilinear on the device (other boxes: tens)
        assert torch.equal(ours[png], theirs[png])  # the PNG was cut in the worker, exactly as the CPU path does
    with pytest.raises(ValueError, match="decode_groups"):
        decode_views(enc, "cpu")
    views, fam2, _ = dev.views((enc, fam, index), torch.Generator())
    assert [v.shape[-1] for v in views] == [96, 96, 48, 48] and torch.equal(fam2, fam)


def test_samplers_and_collates_survive_pickling(stored: torch.Tensor, photos: FileDataset) -> None:
    vs = build_view_sampler(URRL, 32, DINO)
    again = pickle.loads(pickle.dumps(vs))
    a, fa = vs(stored[:4], torch.Generator().manual_seed(2))
    b, fb = again(stored[:4], torch.Generator().manual_seed(2))
    assert torch.equal(fa, fb) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    collate = ViewSource(photos, build_view_sampler(URRL, 96, multi_crop(96, 2)), 0, decode_on_device=True).collate_fn
    assert pickle.loads(pickle.dumps(collate)).sampler.view_sizes == [96, 96, 41, 41]


def test_bad_groups_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        build_view_sampler([], 32, [ViewGroup(2)])
    with pytest.raises(ValueError, match="no view groups"):
        build_view_sampler(URRL, 32, [])
    with pytest.raises(ValueError, match="same weighted family list"):
        ViewSampler([ViewGroup(1), ViewGroup(1)], [build_sampler(URRL, 32, 1), build_sampler(GREY, 32, 1)])
    with pytest.raises(ValueError, match="2 views"):
        ViewSampler([ViewGroup(2)], [build_sampler(URRL, 32, 3)])


def test_a_family_without_a_photometric_stage_takes_no_group_scale() -> None:
    from urrlkit.registry import FAMILIES

    @FAMILIES.register("_test_plain_crop")
    def plain(image_size: int) -> object:
        return lambda x, g: geometry.center_crop_resize(x, image_size)

    try:
        with pytest.raises(UrrlError, match=r"_test_plain_crop.*photometric"):
            build_view_sampler([Spec("_test_plain_crop")], 32, [ViewGroup(2, scale=(0.2, 1))])
        assert build_view_sampler([Spec("_test_plain_crop")], 32, [ViewGroup(2)]).views == 2
    finally:
        FAMILIES._items.pop("_test_plain_crop")
