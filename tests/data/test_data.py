"""The data layer: every registered data set resolves; offline sets load; missing torchvision-backed sets
give a one-line DataError naming the expected path and the download switch; file layouts load from tiny
fixtures; broken files are named in the error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from urrlkit.config import DataConfig
from urrlkit.data import DataRequest, build, from_config, num_classes, split_train_val, to_tensors
from urrlkit.data.datasets import ArrayDataset
from urrlkit.errors import DataError, UrrlError
from urrlkit.registry import DATASETS

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
TORCHVISION_SETS = ["cifar100", "stl10", "aircraft", "cars", "dtd", "flowers102", "food101", "pets",
                    "caltech101", "caltech256", "sun397",
                    # the splits used before Salman et al.'s (tests/data/test_transfer_splits.py)
                    "caltech101-random80", "caltech256-random80", "sun397-random80", "dtd-train1", "flowers102-train"]
FILE_SETS = ["imagefolder", "imagenet", "birdsnap", "npz", "tiny-imagenet", "cifar10", "cifar10-sample"]


def _req(root: Path | None, split: str = "train", size: int = 16, limit: int | None = None) -> DataRequest:
    return DataRequest(root=root, split=split, size=size, limit=limit)


def _png(path: Path, w: int = 20, h: int = 12, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((h, w, 3), value, dtype=np.uint8)
    arr[:, : w // 2, 0] = 255  # an asymmetric image, so a wrong crop or transpose would show
    Image.fromarray(arr).save(path)
    return path


def _folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 2) -> None:
    for ci, cls in enumerate(classes):
        for k in range(per_class):
            _png(root / cls / f"{k}.png", value=40 * ci + k)


def test_every_data_set_is_covered() -> None:
    """A newly registered data set must get a test here."""
    assert sorted(DATASETS.names()) == sorted(TORCHVISION_SETS + FILE_SETS)


def test_datasets_module_keeps_its_public_names() -> None:
    """data/datasets.py was split (base, arrays, files, torchvision_sets); every name it had is still importable
    from it and is the split module's own object, and each built-in data set is an entry point that resolves."""
    import urrlkit.data.arrays as arrays
    import urrlkit.data.base as base
    import urrlkit.data.datasets as datasets
    import urrlkit.data.files as files

    homes = {base: ["SPLITS", "DataRequest", "ArrayDataset", "check_arrays", "FileDataset", "TorchvisionDataset",
                    "originals", "resize_shorter", "center_offsets", "pil_to_uint8", "load_image", "subset_indices",
                    "build", "num_classes"],
             arrays: ["cifar10_sample", "npz", "cifar10", "cifar100"],
             files: ["IMAGE_SUFFIXES", "image_folder", "imagefolder", "imagenet", "birdsnap", "tiny_imagenet"]}
    for module, names in homes.items():
        for name in names:
            assert getattr(datasets, name) is getattr(module, name), name
    for name in TORCHVISION_SETS + FILE_SETS:
        assert name in DATASETS.entry_points() and DATASETS.get(name) is not None, name


# ------------------------------------------------------------------------------------------- offline


@pytest.mark.parametrize("split", ["train", "test"])
def test_bundled_sample(split: str) -> None:
    ds = build("cifar10-sample", _req(None, split, size=32))
    assert len(ds) == (1000 if split == "train" else 500)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and 0 <= y < 10
    assert num_classes(ds) == 10


def test_bundled_sample_resized_and_limited() -> None:
    ds = build("cifar10-sample", _req(None, "test", size=16, limit=7))
    xs, ys = to_tensors(ds)
    assert xs.shape == (7, 3, 16, 16) and ys.shape == (7,)


@pytest.mark.skipif(not (SHARED / "cifar10" / "test.npz").is_file(), reason="../shared/data/cifar10 absent")
def test_offline_cifar10() -> None:
    ds = build("cifar10", _req(SHARED / "cifar10", "test", size=32, limit=20))
    x, _ = ds[0]
    assert len(ds) == 20 and x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert ds.classes[0] == "airplane" and num_classes(ds) == 10


@pytest.mark.skipif(not (SHARED / "tiny-imagenet-200" / "wnids.txt").is_file(),
                    reason="../shared/data/tiny-imagenet-200 absent")
@pytest.mark.parametrize("split", ["train", "test"])
def test_offline_tiny_imagenet(split: str) -> None:
    ds = build("tiny-imagenet", _req(SHARED / "tiny-imagenet-200", split, size=64, limit=4))
    x, y = ds[3]
    assert len(ds) == 4 and x.shape == (3, 64, 64) and 0 <= y < 200 and num_classes(ds) == 200


def test_from_config_uses_recipe_fields() -> None:
    cfg = DataConfig(dataset="cifar10-sample", image_size=24, train_limit=30, test_limit=10)
    assert len(from_config(cfg, "train")) == 30 and from_config(cfg, "test")[0][0].shape == (3, 24, 24)
    assert from_config(cfg.model_copy(update={"load_size": 32}), "test")[0][0].shape == (3, 32, 32)


def test_split_train_val_is_fixed_and_disjoint() -> None:
    ds = build("cifar10-sample", _req(None, "train", size=32, limit=100))
    tr, va = split_train_val(ds, 0.2, seed=3)
    _, va2 = split_train_val(ds, 0.2, seed=3)
    assert va is not None and va2 is not None and len(va) == 20 and len(tr) == 80
    assert list(va.indices) == list(va2.indices) and not set(tr.indices) & set(va.indices)
    assert split_train_val(ds, 0.0)[1] is None


# ---------------------------------------------------------------------------------- torchvision sets


@pytest.mark.parametrize("name", TORCHVISION_SETS)
def test_torchvision_set_absent_offline(name: str, tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        build(name, _req(root, "train"))
    msg = str(info.value)
    assert "\n" not in msg and str(root) in msg
    assert "data.download" in msg and name in msg


def test_torchvision_set_default_root_named() -> None:
    with pytest.raises(DataError, match=r"data/dtd"):
        build("dtd", DataRequest(root=None, split="test", size=32))


# ------------------------------------------------------------------------------------ file layouts


def test_imagefolder(tmp_path: Path) -> None:
    _folder(tmp_path / "train", per_class=3)
    _folder(tmp_path / "test", per_class=1)
    (tmp_path / "train" / "cat" / "._0.png").write_bytes(b"macOS resource fork")  # ignored
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")  # ignored
    ds = build("imagefolder", _req(tmp_path, "train", size=8))
    assert len(ds) == 6 and ds.classes == ["cat", "dog"]
    x, y = ds[4]
    assert x.shape == (3, 8, 8) and x.dtype == torch.uint8 and y == 1
    assert len(build("imagefolder", _req(tmp_path, "test", size=8))) == 2


def test_imagenet_val_is_test(tmp_path: Path) -> None:
    _folder(tmp_path / "train", ("n01", "n02"))
    _folder(tmp_path / "val", ("n01", "n02"), per_class=1)
    assert len(build("imagenet", _req(tmp_path, "test"))) == 2
    assert len(build("imagenet", _req(tmp_path, "train"))) == 4


def test_birdsnap(tmp_path: Path) -> None:
    _folder(tmp_path / "train", ("a_bird", "b_bird", "c_bird"))
    ds = build("birdsnap", _req(tmp_path, "train", size=12))
    assert num_classes(ds) == 3 and ds[5][0].shape == (3, 12, 12)


def test_imagefolder_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "train")):
        build("imagefolder", _req(tmp_path, "train"))
    (tmp_path / "train" / "empty_class").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        build("imagefolder", _req(tmp_path, "train"))


def test_npz(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 10, 10, 3), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", images=images, labels=np.array([0, 1, 2, 1, 0]),
             classes=np.array(["a", "b", "c"]))
    ds = build("npz", _req(tmp_path, "train", size=10))
    assert len(ds) == 5 and ds.classes == ["a", "b", "c"]
    assert torch.equal(ds[1][0], torch.from_numpy(images[1]).permute(2, 0, 1))
    np.savez(tmp_path / "test.npz", images=images[:, :, :, :1], labels=np.array([0, 1, 2, 1, 3]))
    gray = build("npz", _req(tmp_path, "test", size=5))  # grayscale, no class names, resized
    assert gray[0][0].shape == (3, 5, 5) and gray.classes == ["0", "1", "2", "3"]


def test_cifar10_npz_layout(tmp_path: Path) -> None:
    images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "test.npz", images=images, labels=np.arange(4))
    assert len(build("cifar10", _req(tmp_path, "test", size=32))) == 4
    with pytest.raises(DataError, match=r"data\.download"):
        build("cifar10", _req(tmp_path, "train"))


@pytest.mark.parametrize(("content", "match"), [
    (b"not an npz at all", "cannot read npz"),
    (None, "missing array 'labels'"),
])
def test_npz_broken(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "train.npz"
    if content is None:
        np.savez(path, images=np.zeros((2, 4, 4, 3), dtype=np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        build("npz", _req(tmp_path, "train"))
    assert str(path) in str(info.value)


def test_array_checks() -> None:
    """check_arrays: what an array data set must hold; unsigned labels are fine, classes inferred when absent."""
    ok = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    ds = ArrayDataset(ok, np.array([0, 2, 1], dtype=np.uint8), None, source="s.npz")
    assert ds.classes == ["0", "1", "2"] and ds.labels.tolist() == [0, 2, 1]
    for images, labels, classes, match in [
        (ok, np.array([0, 1, 3]), ["a", "b", "c"], "label 3 is out of range for 3 classes"),
        (ok, np.array([0, -1, 1]), None, "labels must be ≥ 0, found -1"),
        (ok, np.array([0.0, 1.0, 1.0]), None, "integers, got shape \\(3,\\) float64"),
        (ok, np.array([0, 1]), None, "2 labels for 3 images"),
        (ok[:0], np.array([], dtype=int), None, "no images"),
        (np.zeros((3, 4, 6, 3), dtype=np.uint8), np.array([0, 1, 2]), None, "4x6 pixels"),
    ]:
        with pytest.raises(DataError, match="^s.npz: .*" + match):
            ArrayDataset(images, labels, classes, source="s.npz")


def test_npz_wrong_dtype(tmp_path: Path) -> None:
    np.savez(tmp_path / "train.npz", images=np.zeros((2, 4, 4, 3), dtype=np.float32), labels=np.zeros(2))
    with pytest.raises(DataError, match="uint8"):
        build("npz", _req(tmp_path, "train"))


@pytest.mark.parametrize("content", [b"", b"garbage, not a PNG", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_corrupt_image_names_file(tmp_path: Path, content: bytes) -> None:
    _folder(tmp_path / "train", per_class=1)
    bad = tmp_path / "train" / "dog" / "zz_broken.png"
    bad.write_bytes(content)
    ds = build("imagefolder", _req(tmp_path, "train"))
    with pytest.raises(DataError) as info:
        to_tensors(ds)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_truncated_image_names_file(tmp_path: Path) -> None:
    good = _png(tmp_path / "train" / "cat" / "a.png", w=64, h=64)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=str(good)):
        build("imagefolder", _req(tmp_path, "train"))[0]


def _tiny(root: Path) -> None:
    wnids = ["n001", "n002"]
    (root).mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    for w in wnids:
        for k in range(2):
            _png(root / "train" / w / "images" / f"{w}_{k}.JPEG", 64, 64)
    ann = []
    for k in range(3):
        _png(root / "val" / "images" / f"val_{k}.JPEG", 64, 64)
        ann.append(f"val_{k}.JPEG\t{wnids[k % 2]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")


def test_tiny_imagenet_layout(tmp_path: Path) -> None:
    _tiny(tmp_path / "tin")
    train = build("tiny-imagenet", _req(tmp_path / "tin", "train", size=32))
    test = build("tiny-imagenet", _req(tmp_path / "tin", "test", size=32))
    assert len(train) == 4 and len(test) == 3 and [test[k][1] for k in range(3)] == [0, 1, 0]
    assert train[0][0].shape == (3, 32, 32)


def test_tiny_imagenet_bad_annotation(tmp_path: Path) -> None:
    _tiny(tmp_path / "tin")
    ann = tmp_path / "tin" / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_9.JPEG\tn999\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match=rf"{ann}:4: class 'n999'"):
        build("tiny-imagenet", _req(tmp_path / "tin", "test"))


def test_tiny_imagenet_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"wnids\.txt"):
        build("tiny-imagenet", _req(tmp_path, "train"))


def test_unknown_split_and_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown split 'val'; allowed: train, test"):
        build("cifar10-sample", _req(None, "val"))
    with pytest.raises(UrrlError, match="did you mean 'cifar10'"):
        build("cifar01", _req(tmp_path))
