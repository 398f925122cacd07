"""The transfer sets split as Salman et al. (2020) split them (urrlkit/data/transfer_splits.py), checked on fake
layouts of tiny images in torchvision's folder structure: Caltech-101/256 with 30/60 training images per class,
SUN397 partition 1, DTD train1 + val1, Flowers-102 train + val; the earlier splits as named options; a bad name
is one error line naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from urrlkit.config import validate_dict
from urrlkit.data import DataRequest, build, dataset_labels, num_classes
from urrlkit.data.transfer_splits import first_per_class
from urrlkit.errors import DataError, RecipeError


def _jpg(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 8, 3), value % 256, dtype=np.uint8)).save(path)


def _split(name: str, root: Path, split: str) -> object:
    return build(name, DataRequest(root=root, split=split, size=4))


def _len(ds: object) -> int:
    return len(ds)  # type: ignore[arg-type]


def test_first_per_class_takes_the_first_n_of_each_class_in_order() -> None:
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert first_per_class(labels, 2) == ([0, 1, 3, 4, 5, 6], [2, 7, 8])
    assert first_per_class([0, 1, 0, 1, 0], 1) == ([0, 1], [2, 3, 4])  # by class, not by position


def _caltech101(root: Path, counts: dict[str, int]) -> None:
    base = root / "caltech101" / "101_ObjectCategories"
    for c, n in {"BACKGROUND_Google": 5, **counts}.items():
        for k in range(1, n + 1):
            _jpg(base / c / f"image_{k:04d}.jpg", k)


def test_caltech101_trains_on_30_images_per_class(tmp_path: Path) -> None:
    counts = {"accordion": 32, "airplanes": 35, "anchor": 31}  # BACKGROUND_Google is not a class
    _caltech101(tmp_path, counts)
    train, test = _split("caltech101", tmp_path, "train"), _split("caltech101", tmp_path, "test")
    assert (_len(train), _len(test)) == (90, 8)
    assert num_classes(train) == 3 and train.classes == sorted(counts)  # type: ignore[attr-defined]
    inner = train.ds  # type: ignore[attr-defined]  # TorchvisionDataset → Subset → torchvision's Caltech101
    # the training images are image_0001 … image_0030 of every class, as Salman et al.'s per-class slice
    assert sorted({inner.dataset.index[i] for i in inner.indices}) == list(range(1, 31))
    assert dataset_labels(train).bincount().tolist() == [30, 30, 30]  # type: ignore[union-attr]
    assert dataset_labels(test).bincount().tolist() == [2, 5, 1]  # type: ignore[union-attr]
    old_train = _split("caltech101-random80", tmp_path, "train")
    old_test = _split("caltech101-random80", tmp_path, "test")
    assert (_len(old_train), _len(old_test)) == (78, 20)  # int(0.8 · 98) of all images, not per class


def test_caltech256_trains_on_60_images_per_class(tmp_path: Path) -> None:
    base = tmp_path / "caltech256" / "256_ObjectCategories"
    for c, (folder, n) in enumerate([("001.ak47", 61), ("002.american-flag", 64), ("257.clutter", 62)], 1):
        for k in range(1, n + 1):
            _jpg(base / folder / f"{c:03d}_{k:04d}.jpg", k)
    train, test = _split("caltech256", tmp_path, "train"), _split("caltech256", tmp_path, "test")
    assert (_len(train), _len(test)) == (180, 7) and num_classes(test) == 3
    assert (_len(_split("caltech256-random80", tmp_path, "train")),
            _len(_split("caltech256-random80", tmp_path, "test"))) == (149, 38)


def _sun397(root: Path, partitions: str | None = ".") -> dict[str, list[str]]:
    """Two classes of 5 images; partition 1 trains on 2 and tests on 2 of each (one image of each is in
    neither, as the official partitions use 100 of each class's images)."""
    data = root / "SUN397"
    data.mkdir(parents=True)
    (data / "ClassName.txt").write_text("/a/abbey\n/b/bakery/shop\n")
    files = {c: [f"/{c}/sun_{c.replace('/', '')}{k}.jpg" for k in range(5)] for c in ("a/abbey", "b/bakery/shop")}
    for names in files.values():
        for k, rel in enumerate(names):
            _jpg(data / rel[1:], k)
    lists = {"train": [f for names in files.values() for f in names[:2]],
             "test": [f for names in files.values() for f in names[2:4]]}
    if partitions is not None:
        (data / partitions).mkdir(exist_ok=True)
        (data / partitions / "Training_01.txt").write_text("\n".join(lists["train"]) + "\n")
        (data / partitions / "Testing_01.txt").write_text("\n".join(lists["test"]) + "\n")
    return lists


@pytest.mark.parametrize("where", [".", "Partitions"])
def test_sun397_uses_partition_1(tmp_path: Path, where: str) -> None:
    lists = _sun397(tmp_path, where)
    for split in ("train", "test"):
        ds = _split("sun397", tmp_path, split)
        assert _len(ds) == len(lists[split]) == 4
        assert ds.classes == ["abbey", "bakery/shop"]  # type: ignore[attr-defined]
        assert dataset_labels(ds).tolist() == [0, 0, 1, 1]  # type: ignore[union-attr]
        inner = ds.ds  # type: ignore[attr-defined]
        picked = ["/" + inner.dataset._image_files[i].relative_to(tmp_path / "SUN397").as_posix()
                  for i in inner.indices]
        assert picked == lists[split]
    assert (_len(_split("sun397-random80", tmp_path, "train")),
            _len(_split("sun397-random80", tmp_path, "test"))) == (8, 2)


def test_sun397_without_partition_files_is_one_line(tmp_path: Path) -> None:
    _sun397(tmp_path, None)
    with pytest.raises(DataError) as info:
        _split("sun397", tmp_path, "train")
    msg = str(info.value)
    assert "\n" not in msg and "Training_01.txt" in msg and "sun397-random80" in msg
    assert str(tmp_path / "SUN397" / "Partitions" / "Training_01.txt") in msg
    assert _len(_split("sun397-random80", tmp_path, "train")) == 8  # the carve needs no partition


def test_sun397_partition_naming_a_missing_image_is_one_line(tmp_path: Path) -> None:
    _sun397(tmp_path)
    (tmp_path / "SUN397" / "Testing_01.txt").write_text("/a/abbey/sun_gone.jpg\n")
    with pytest.raises(DataError, match=r"Testing_01.txt: 1 of its 1 images .*first: /a/abbey/sun_gone.jpg"):
        _split("sun397", tmp_path, "test")


def test_dtd_trains_on_train1_and_val1(tmp_path: Path) -> None:
    data = tmp_path / "dtd" / "dtd"
    lists = {"train1": 3, "val1": 2, "test1": 4, "train2": 1}  # per class; other partitions are ignored
    for part, n in lists.items():
        rows = [f"{c}/{c}_{part}_{k}.jpg" for c in ("banded", "zigzagged") for k in range(n)]
        for k, row in enumerate(rows):
            _jpg(data / "images" / row, k)
        (data / "labels").mkdir(parents=True, exist_ok=True)
        (data / "labels" / f"{part}.txt").write_text("\n".join(rows) + "\n")
    train, test = _split("dtd", tmp_path, "train"), _split("dtd", tmp_path, "test")
    assert (_len(train), _len(test)) == (10, 8)
    assert train.classes == ["banded", "zigzagged"]  # type: ignore[attr-defined]
    assert dataset_labels(train).tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 1, 1]  # type: ignore[union-attr]
    assert [int(train[i][1]) for i in range(10)] == dataset_labels(train).tolist()  # type: ignore[index,union-attr]
    assert _len(_split("dtd-train1", tmp_path, "train")) == 6
    assert _len(_split("dtd-train1", tmp_path, "test")) == 8


def test_flowers102_trains_on_train_and_val(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy.io import savemat
    from torchvision.datasets import flowers102

    base = tmp_path / "flowers-102"
    labels = np.array([1, 1, 2, 2, 3, 3, 1, 2, 3, 1])  # image k has label labels[k - 1] (1-based, as the .mat)
    for k in range(1, 11):
        _jpg(base / "jpg" / f"image_{k:05d}.jpg", k)
    savemat(base / "imagelabels.mat", {"labels": labels})
    savemat(base / "setid.mat", {"trnid": np.array([1, 3, 5]), "valid": np.array([2, 4, 6]),
                                 "tstid": np.array([7, 8, 9, 10])})
    # torchvision checks the official .mat files' MD5; these fakes stand in for them.
    monkeypatch.setattr(flowers102, "check_integrity", lambda *a, **k: True)
    train, test = _split("flowers102", tmp_path, "train"), _split("flowers102", tmp_path, "test")
    assert (_len(train), _len(test)) == (6, 4) and num_classes(train) == 102
    assert dataset_labels(train).tolist() == [0, 1, 2, 0, 1, 2]  # type: ignore[union-attr]
    assert (_len(_split("flowers102-train", tmp_path, "train")),
            _len(_split("flowers102-train", tmp_path, "test"))) == (3, 4)


@pytest.mark.parametrize("name", ["caltech101-random80", "dtd-train1", "flowers102-train", "sun397"])
def test_split_choice_is_a_recipe_value(name: str) -> None:
    recipe = validate_dict({"finetune": {"dataset": name}})
    assert recipe.finetune.dataset == name


def test_a_bad_split_choice_is_one_line_naming_the_field() -> None:
    with pytest.raises(RecipeError) as info:
        validate_dict({"finetune": {"dataset": "caltech101-random"}}, "r.toml")
    msg = str(info.value)
    assert "\n" not in msg and "finetune.dataset" in msg and "did you mean 'caltech101-random80'" in msg
