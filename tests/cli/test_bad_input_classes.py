"""Class folders against the model's class names, and 16-bit images, through `urrl eval` (issue 23).

An ImageFolder numbers its classes by sorted folder position, so a test split with one folder missing numbers
every later class differently from the data set the model was trained on. A model saved with its class names
(config.json `classes`) lets evaluation map the split's labels by name, or refuse a class it never saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner, Result

from urrlkit.cli import app

ROOT = Path(__file__).resolve().parents[2]
QUICK = str(ROOT / "recipes" / "quickstart.toml")
CLASSES = ["blue", "green", "red"]


def _model(tmp: Path, classes: list[str] | None = CLASSES) -> Path:
    """A 3-class classifier that always predicts class 2 ("red"): zero head weights, bias on output 2."""
    from urrlkit.hub import save_model
    from urrlkit.models import Classifier, build_encoder

    torch.manual_seed(0)
    clf = Classifier(build_encoder("resnet10", small_stem=True, width=4), 3)
    with torch.no_grad():
        clf.head.weight.zero_()
        clf.head.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    extra = {} if classes is None else {"classes": classes}
    return save_model(clf, tmp / "m", **extra)


def _split(tmp: Path, counts: dict[str, int]) -> Path:
    """`<root>/test/<class>/<i>.png`, solid 32×32 images; returns root."""
    root = tmp / "folder"
    for cls, n in counts.items():
        (root / "test" / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(root / "test" / cls / f"{i}.png")
    return root


def _eval(tmp: Path, model: Path, root: Path) -> tuple[Result, Path]:
    out = tmp / "o"
    args = ["eval", str(model), "--recipe", QUICK, "--out", str(out), "--set", "data.dataset='imagefolder'",
            "--set", f"data.root='{root}'", "--set", "eval.suites=['clean']"]
    return CliRunner().invoke(app, args), out


def _top1(out: Path) -> float:
    results = json.loads(next(out.rglob("results.json")).read_text())
    return float(results["metrics"]["clean"]["top1"])


def test_a_missing_class_folder_is_mapped_by_name(tmp_path: Path) -> None:
    # Folders green (1 image) and red (2): by position they would be labels 0 and 1, and a model that always
    # answers "red" (index 2) would score 0%; by name red is 2, so top-1 is 2/3.
    result, out = _eval(tmp_path, _model(tmp_path), _split(tmp_path, {"green": 1, "red": 2}))
    assert result.exit_code == 0, (result.stderr[-2000:], repr(result.exception))
    assert "the test split has 2 of the model's 3 classes; its labels are mapped to the model's by class name" \
        in result.stdout
    assert _top1(out) == pytest.approx(100 * 2 / 3, abs=0.01)


def test_the_same_classes_evaluate_without_a_note(tmp_path: Path) -> None:
    result, out = _eval(tmp_path, _model(tmp_path), _split(tmp_path, {"blue": 1, "green": 1, "red": 2}))
    assert result.exit_code == 0, (result.stderr[-2000:], repr(result.exception))
    assert "mapped" not in result.stdout
    assert _top1(out) == pytest.approx(50.0)


def test_a_class_the_model_lacks_is_refused(tmp_path: Path) -> None:
    root = _split(tmp_path, {"green": 1, "purple": 1, "red": 1})
    result, out = _eval(tmp_path, _model(tmp_path), root)
    assert result.exit_code == 2, (result.stderr[-2000:], repr(result.exception))
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {root / 'test'}: "), lines
    assert "'purple'" in lines[0] and "Traceback" not in result.output
    assert not out.exists()


def test_a_model_without_class_names_keeps_the_count_check(tmp_path: Path) -> None:
    root = _split(tmp_path, {"a": 1, "b": 1, "c": 1, "d": 1})
    result, _ = _eval(tmp_path, _model(tmp_path, classes=None), root)
    assert result.exit_code == 2
    assert "the test split has 4 classes, but the model predicts 3" in result.stderr


# ------------------------------------------------------------------------------------------ 16-bit images
def test_a_16_bit_png_is_scaled_to_8_bit(tmp_path: Path) -> None:
    from urrlkit.data.base import load_image

    path = tmp_path / "g16.png"
    Image.fromarray(np.array([[0, 257 * 100], [4096, 65535]], np.uint16)).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")  # 16-bit grayscale as PIL opens it
    x = load_image(path, None)
    assert x.shape == (3, 2, 2)
    # 255/65535 per step, rounded: 25700 → 100, 4096 → 15.94 → 16 (PIL's own convert would clip both to 255)
    assert x[0].tolist() == [[0, 100], [16, 255]] and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_a_float_image_is_refused_naming_the_file(tmp_path: Path) -> None:
    from urrlkit.data.base import load_image
    from urrlkit.errors import DataError

    path = tmp_path / "f32.tif"
    Image.fromarray(np.ones((2, 2), np.float32)).save(path)
    with pytest.raises(DataError, match=r"f32\.tif: cannot read image .*floating-point"):
        load_image(path, None)


def test_a_16_bit_folder_reads_as_its_8_bit_copy(tmp_path: Path) -> None:
    """Through the ImageFolder reader, resized as evaluation resizes: 16-bit pixels v·257 read as 8-bit v."""
    from urrlkit.data.files import image_folder

    a = (np.arange(48 * 40).reshape(48, 40) * 7) % 256
    read = []
    for bits, img in ((8, a.astype(np.uint8)), (16, (a * 257).astype(np.uint16))):
        (tmp_path / str(bits) / "c").mkdir(parents=True)
        Image.fromarray(img).save(tmp_path / str(bits) / "c" / "0.png")
        read.append(image_folder(tmp_path / str(bits), "imagefolder", 32)[0][0])
    assert read[0].shape == (3, 32, 32) and torch.equal(read[0], read[1])
