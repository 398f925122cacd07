"""Training crops drawn on the ORIGINAL image of file-backed data sets (augment/crops.py), as torchvision's
RandomResizedCrop draws them in the reference pipelines (MoCo main_moco.py / main_lincls.py, AugMix imagenet.py):
box geometry on real non-square JPEGs, exact pixels against torchvision, per-view family draws, seeding, and
pretraining end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader

from urrlkit.augment import build_sampler, supervised_transform
from urrlkit.augment.crops import CropSpec, crop_views, cut, draw_boxes, to_pil
from urrlkit.augment.workers import OriginalViewsCollate, SupervisedCropCollate, batch_seed, supervised_source
from urrlkit.config import load
from urrlkit.data import DataRequest, build, originals, split_train_val
from urrlkit.data.datasets import load_image
from urrlkit.pretext.methods.moco_v2 import MoCoV2
from urrlkit.pretext.workflow import Indexed, pretrain

ROOT = Path(__file__).resolve().parents[2]
# (width, height): 3:2 landscape, portrait, 4:3 landscape, and a 3:4 one.
SIZES = [(300, 200), (200, 320), (500, 375), (240, 320)]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`root/{train,test}/<class>/*.jpg`: CIFAR-10 sample photographs upscaled to non-square sizes, JPEG."""
    root = tmp_path_factory.mktemp("photos")
    with np.load(ROOT / "urrlkit" / "data" / "sample" / "cifar10-sample.npz") as arr:
        images, labels = arr["train_images"], arr["train_labels"]
    for split, per_class, offset in (("train", 12, 0), ("test", 4, 12)):
        for k in range(2):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            for j, i in enumerate(np.flatnonzero(labels == k)[offset:offset + per_class]):
                size = SIZES[j % len(SIZES)]
                Image.fromarray(images[i]).resize(size, Image.BICUBIC).save(folder / f"{j}.jpg", quality=90)
    return root


def fractions(spec: CropSpec, h: int, w: int, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    hs, ws = torch.full((n,), h), torch.full((n,), w)
    b = draw_boxes(spec, hs, ws, 224, torch.Generator().manual_seed(seed))
    return b.top, b.left, b.height, b.width, (b.height * b.width).double() / (h * w)


@pytest.mark.parametrize("scale", [(0.2, 1.0), (0.08, 1.0)])
def test_boxes_on_a_4_3_photo_follow_torchvision(scale: tuple[float, float]) -> None:
    h, w, n = 375, 500, 20000
    top, left, bh, bw, frac = fractions(CropSpec("rrc", scale=scale), h, w, n)
    # Inside the original, aspect ratio within [3/4, 4/3] up to the integer rounding of the sides.
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
    ratio = bw.double() / bh.double()
    assert ratio.min() > 0.74 and ratio.max() < 1.35
    assert frac.min() >= scale[0] - 0.005 and frac.max() <= 1.0
    # Every column and row of the photo is reachable (a stored centre square would lose 62 px on each side).
    assert left.min() == 0 and (left + bw).max() == w and top.min() == 0 and (top + bh).max() == h
    # The area fraction is torchvision's get_params distribution (10 attempts, log-uniform ratio, fallback):
    # mean and quantiles against torchvision itself on the same image size.
    torch.manual_seed(0)
    img = torch.zeros(1, h, w)
    ref = torch.tensor([(lambda p: p[2] * p[3] / (h * w))(T.RandomResizedCrop.get_params(img, list(scale),
                                                                                          [3 / 4, 4 / 3]))
                        for _ in range(4000)], dtype=torch.float64)
    assert abs(frac.mean() - ref.mean()) < 0.015
    q = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    assert (frac.quantile(q) - ref.quantile(q)).abs().max() < 0.03
    if scale == (0.2, 1.0):
        # ≈ 0.50 rather than U(0.2, 1)'s 0.6: a draw whose box does not fit is redrawn, and large boxes at a
        # ratio far from the photo's do not fit.
        assert 0.46 < float(frac.mean()) < 0.54


def test_fallback_is_torchvision_centre_crop() -> None:
    # A 10×200 strip: no box of ratio ≤ 4/3 with area ≥ 0.9 fits, so every draw falls back to the centre crop.
    top, left, bh, bw, _ = fractions(CropSpec("rrc", scale=(0.9, 1.0)), 10, 200, 50)
    assert (bh == 10).all() and (bw == 13).all() and (left == (200 - 13) // 2).all() and (top == 0).all()


def test_cut_equals_torchvision_resized_crop_and_flip(tree: Path) -> None:
    path = sorted((tree / "train" / "class0").iterdir())[2]  # 500×375
    with Image.open(path) as im:
        pil = im.convert("RGB")
    original = load_image(path, None)
    assert tuple(original.shape) == (3, 375, 500)
    for t, lf, h, w, flip in [(0, 0, 375, 375, False), (10, 137, 200, 260, True), (300, 7, 75, 100, False)]:
        ref = TF.resized_crop(pil, t, lf, h, w, [224, 224])
        if flip:
            ref = TF.hflip(ref)
        out = cut(to_pil(original), "rrc", t, lf, h, w, flip, 224)
        assert np.array_equal(out, np.asarray(ref))


def test_evaluation_is_resize_256_center_crop_224_of_the_original(tree: Path) -> None:
    to_input = supervised_transform("none", 224, train=False)
    ref_t = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
    for path in sorted((tree / "test" / "class1").iterdir()):
        with Image.open(path) as im:
            ref = ref_t(im.convert("RGB"))
        ours = to_input(load_image(path, 256)[None], None)[0]
        assert torch.equal(ours, ref), path.name


def _train(tree: Path) -> object:
    return build("imagefolder", DataRequest(tree, "train", 256))


def test_views_per_family_spec_seeded_by_batch(tree: Path) -> None:
    sampler = build_sampler(MoCoV2(p=0.5).family_weights(), image_size=96, views=2)
    assert sampler.names == ["augmix_allop", "moco_v2"]
    assert sampler.crop_specs() == [CropSpec("rrc", scale=(0.08, 1.0)), CropSpec("rrc", scale=(0.2, 1.0))]
    full = originals(_train(tree))
    items = [(full[i][0], i) for i in range(8)]
    cuts, fam, index = OriginalViewsCollate(sampler, seed=5)(items)
    assert len(cuts) == 2 and cuts[0].dtype == torch.uint8 and tuple(cuts[0].shape) == (8, 3, 96, 96)
    cut_views = torch.cat(cuts)
    assert tuple(fam.shape) == (2, 8) and torch.equal(index, torch.arange(8))
    # Exactly: families drawn per view, then each view's box with its own family's spec, from the batch seed.
    g = torch.Generator().manual_seed(batch_seed(5, index))
    ref_fam = sampler.draw_families(16, g)
    ref = crop_views([im for im, _ in items], ref_fam, sampler.crop_specs(), 96, g)
    assert torch.equal(fam.flatten(), ref_fam) and torch.equal(cut_views, ref)
    assert torch.equal(torch.cat(OriginalViewsCollate(sampler, seed=5)(items)[0]), cut_views)
    assert not torch.equal(torch.cat(OriginalViewsCollate(sampler, seed=6)(items)[0]), cut_views)
    # The photometric stage in the worker gives float views in [0, 1], as the stored-image path does.
    views, fam2, _ = OriginalViewsCollate(sampler, seed=5, photometric=True)(items)
    assert torch.equal(fam2, fam) and len(views) == 2 and views[0].shape == (8, 3, 96, 96)
    assert views[0].dtype == torch.float32 and float(views[0].min()) >= 0 and float(views[0].max()) <= 1


def test_family_draws_per_view_with_eq2_frequencies(tree: Path) -> None:
    sampler = build_sampler(MoCoV2(p=0.3).family_weights(), image_size=32, views=2)
    fam = sampler.draw_families(2 * 20000, torch.Generator().manual_seed(0)).view(2, -1).float()
    # p = 0.3 for AugMix (index 0): P(moco_v2) = 0.7, independently per view.
    assert abs(fam.mean() - 0.7) < 0.01
    assert abs((fam[0] * fam[1]).mean() - 0.49) < 0.01


def test_worker_count_does_not_change_the_views(tree: Path) -> None:
    sampler = build_sampler(MoCoV2(p=0.5).family_weights(), image_size=72, views=2)
    ds = Indexed(originals(_train(tree)))

    def batches(workers: int) -> list:
        loader = DataLoader(ds, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(0),
                            num_workers=workers, collate_fn=OriginalViewsCollate(sampler, seed=1))
        return list(loader)

    for (va, fa, ia), (vb, fb, ib) in zip(batches(0), batches(2), strict=True):
        assert torch.equal(fa, fb) and torch.equal(ia, ib)
        assert all(torch.equal(x, y) for x, y in zip(va, vb, strict=True))


def test_supervised_crops_are_rrc_008_on_the_original(tree: Path) -> None:
    train, _ = split_train_val(_train(tree), 0.25, seed=0)
    source, collate, augment = supervised_source(train, "crop_flip", 224, "original", seed=3)
    assert isinstance(collate, SupervisedCropCollate) and collate.spec == CropSpec("rrc", scale=(0.08, 1.0))
    x, y = collate([source[i] for i in range(6)])
    assert x.dtype == torch.uint8 and tuple(x.shape) == (6, 3, 224, 224)
    assert torch.equal(y, torch.tensor([train[i][1] for i in range(6)]))
    assert augment(x, None).dtype == torch.float32
    _, _, _, _, frac = fractions(collate.spec, 375, 500, 20000)
    assert frac.min() >= 0.075 and frac.quantile(0.05) < 0.15
    # Stored arrays (CIFAR sample), the ≤ 64-px pad-crop recipe, or crop_from = 'stored': the device transform.
    sample = build("cifar10-sample", DataRequest(None, "train", 32))
    for args in ((sample, "crop_flip", 224, "original"), (train, "crop_flip", 64, "original"),
                 (train, "crop_flip", 224, "stored"), (train, "none", 224, "original")):
        src, coll, _ = supervised_source(*args, seed=3)
        assert coll is None and src is args[0]


def test_array_sets_have_no_originals() -> None:
    assert originals(build("cifar10-sample", DataRequest(None, "train", 32))) is None


def tiny_recipe(tree: Path, out: Path, name: str, *extra: str) -> object:
    sets = [
        f"data.root='{tree}'", "data.dataset='imagefolder'", "data.image_size=72", "data.load_size=82",
        "data.batch_size=8", "model.backbone='resnet10'", "model.width=4", "pretext.queue_size=16",
        "pretext.head_dim=16", "pretext.bn_groups=2", "optim.epochs=2", "optim.checkpoint_every=2",
        "optim.log_every=1", "run.trackers=[]", f"run.output_dir='{out}'", f"run.name='{name}'",
        "finetune.epochs=2", "finetune.batch_size=8", *extra,
    ]
    return load(ROOT / "recipes" / "quickstart.toml", sets)


def same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize(("workers", "augment_in"), [(0, "device"), (2, "device"), (2, "workers")])
def test_pretrain_on_photos_draws_crops_on_the_originals(tree: Path, tmp_path: Path, workers: int,
                                                         augment_in: str) -> None:
    extra = (f"data.workers={workers}", f"data.augment_in='{augment_in}'")
    pretrain(tiny_recipe(tree, tmp_path, "full", *extra))
    lines = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert lines[0]["crops_from"] == "original" and lines[0]["augment_in"] == augment_in
    assert lines[-1]["stage"] == "pretrain-done" and set(lines[-1]["family_fraction"]) == {"augmix_allop", "moco_v2"}
    assert all(np.isfinite(x["loss"]) for x in lines if "loss" in x)
    # Resume mid-run reaches the same weights: crops are seeded per batch, the device stream is checkpointed.
    cut_run = tiny_recipe(tree, tmp_path, "cut", *extra)
    pretrain(cut_run, stop_after=3)
    pretrain(cut_run, resume=True)
    assert same_weights(tmp_path / "full", tmp_path / "cut")
    if workers == 0:  # the stored square instead: other crops, other weights
        pretrain(tiny_recipe(tree, tmp_path, "stored", *extra, "data.crop_from='stored'"))
        start = json.loads((tmp_path / "stored" / "metrics.jsonl").read_text().splitlines()[0])
        assert start["crops_from"] == "stored" and not same_weights(tmp_path / "full", tmp_path / "stored")


def test_finetune_training_crops_come_from_the_originals(tree: Path, tmp_path: Path) -> None:
    from urrlkit.finetune.train import train_classifier
    from urrlkit.models import Classifier, build_encoder

    def run(name: str, stop_after: int | None = None, resume: bool = False) -> Classifier:
        r = tiny_recipe(tree, tmp_path, name, "data.workers=2")
        torch.manual_seed(0)
        model = Classifier(build_encoder("resnet10", small_stem=True, width=4), 2)
        return train_classifier(r, model, _train(tree), r.finetune, tmp_path / name / "checkpoints",
                                r.finetune.regularizer, resume=resume, stop_after=stop_after)

    full = run("a")
    run("b", stop_after=4)
    resumed = run("b", resume=True)
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
