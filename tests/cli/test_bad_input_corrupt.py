"""`urrl corrupt` and the -C readers, table-driven: a bad output folder or a malformed -C set ends with exit
code 2, one line on stderr naming the folder or file, and nothing on disk changed; a stop leaves the output
folder as it was and says so (issue #23)."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from clean_error import expect_clean_error, sets, snapshot
from PIL import Image
from typer.testing import CliRunner

from urrlkit import cli
from urrlkit.cli import app

ROOT = Path(__file__).resolve().parents[2]
QUICK = str(ROOT / "recipes" / "quickstart.toml")
FAST = ["-c", "fog", "--limit", "4"]


def _model(tmp: Path) -> Path:
    from urrlkit.hub import save_model
    from urrlkit.models import Classifier, build_encoder

    torch.manual_seed(0)
    return save_model(Classifier(build_encoder("resnet10", small_stem=True, width=4), 10), tmp / "m")


def _corrupt(tmp: Path, out: Path, *args: str) -> None:
    result = CliRunner().invoke(app, ["corrupt", "cifar10-sample", "--out", str(out), *(args or FAST)])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------------------------ output folders
def _existing_set(tmp: Path) -> list[str]:
    _corrupt(tmp, tmp / "c")
    return ["corrupt", "cifar10-sample", "--out", str(tmp / "c"), "-c", "gaussian_noise", "--limit", "2"]


def _stray_file(tmp: Path) -> list[str]:
    (tmp / "c").mkdir()
    (tmp / "c" / "notes.txt").write_text("mine")
    return ["corrupt", "cifar10-sample", "--out", str(tmp / "c"), *FAST]


def _out_is_file(tmp: Path) -> list[str]:
    (tmp / "c").write_text("a file")
    return ["corrupt", "cifar10-sample", "--out", str(tmp / "c"), *FAST]


def _out_under_file(tmp: Path) -> list[str]:
    (tmp / "f").write_text("a file")
    return ["corrupt", "cifar10-sample", "--out", str(tmp / "f" / "c"), *FAST]


def _case_collision(tmp: Path) -> list[str]:
    for name in ("Dup.png", "dup.png"):  # one JPEG name on a file system that ignores case
        (tmp / "data" / "test" / "cat").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp / "data" / "test" / "cat" / name)
    return ["corrupt", "imagefolder", "--root", str(tmp / "data"), "--size", "32", "-c", "fog",
            "--out", str(tmp / "c")]


OUTPUT_CASES = [
    ("existing -C set without --overwrite", _existing_set, "--overwrite"),
    ("stray file in --out", _stray_file, "not empty"),
    ("--out is a file", _out_is_file, "is a file"),
    ("--out under a file", _out_under_file, "is a file"),
    ("two images, one output name", _case_collision, "rename one"),
]


@pytest.mark.parametrize(("label", "make", "names"), OUTPUT_CASES, ids=[c[0] for c in OUTPUT_CASES])
def test_bad_output_is_refused(tmp_path: Path, label: str, make: Callable[[Path], list[str]], names: str) -> None:
    expect_clean_error(tmp_path, make(tmp_path), names)


def test_unwritable_output_folder_is_named_before_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # as root every folder is writable
    expect_clean_error(tmp_path, ["corrupt", "cifar10-sample", "--out", str(tmp_path / "c"), *FAST],
                       str(tmp_path))


def test_full_disk_leaves_no_partial_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _corrupt(tmp_path, tmp_path / "c")

    def full(*a: object, **k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "open_memmap", full)
    expect_clean_error(tmp_path, ["corrupt", "cifar10-sample", "--out", str(tmp_path / "c"), "--overwrite",
                                  *FAST], "no space left")


def test_overwrite_replaces_the_whole_set(tmp_path: Path) -> None:
    out = tmp_path / "c"
    _corrupt(tmp_path, out)
    _corrupt(tmp_path, out, "-c", "gaussian_noise", "--limit", "2", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["gaussian_noise.npy", "labels.npy", "meta.json"]
    assert np.load(out / "labels.npy").shape == (10,) and np.load(out / "gaussian_noise.npy").shape[0] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary sibling left


def test_same_stem_images_keep_both(tmp_path: Path) -> None:
    cat = tmp_path / "data" / "test" / "cat"
    cat.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 0, 0)).save(cat / "dup.png")
    Image.new("RGB", (8, 8), (0, 200, 0)).save(cat / "dup.jpg")
    Image.new("RGB", (8, 8), (0, 0, 200)).save(cat / "solo.png")
    result = CliRunner().invoke(app, ["corrupt", "imagefolder", "--root", str(tmp_path / "data"), "--size", "32",
                                      "-c", "fog", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "c" / "fog" / "1" / "cat").iterdir()) == [
        "dup.jpg.JPEG", "dup.png.JPEG", "solo.JPEG"]


# ------------------------------------------------------------------------------------------ stops
def _interrupt(exc: type[BaseException]) -> Callable[..., None]:
    def stop(*a: object, **k: object) -> None:
        raise exc

    return stop


@pytest.mark.parametrize(("exc", "code", "head"), [(KeyboardInterrupt, 130, "interrupted"),
                                                   (cli.Terminated, 143, "terminated (SIGTERM)")])
def test_stopped_corrupt_leaves_the_old_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            exc: type[BaseException], code: int, head: str) -> None:
    from urrlkit.evaluate.corruptions import generate

    out = tmp_path / "c"
    _corrupt(tmp_path, out)
    before = snapshot(tmp_path)
    monkeypatch.setattr(generate, "corrupt_framed", _interrupt(exc))
    result = CliRunner().invoke(app, ["corrupt", "cifar10-sample", "--out", str(out), "--overwrite", *FAST])
    assert result.exit_code == code
    assert result.stderr.strip() == f"{head}; {out} was left as it was"
    assert "--resume" not in result.stderr and snapshot(tmp_path) == before


def test_stopped_eval_says_nothing_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from urrlkit.evaluate import workflow

    model = _model(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setattr(workflow, "run_suites", _interrupt(KeyboardInterrupt))
    result = CliRunner().invoke(app, ["eval", str(model), "--recipe", QUICK, "--out", str(tmp_path / "o")])
    assert result.exit_code == 130
    line = result.stderr.strip()
    assert line.startswith("interrupted; nothing was written") and "checkpoint" not in line, line
    assert snapshot(tmp_path) == before


def test_training_stop_still_names_its_checkpoint() -> None:
    exc = KeyboardInterrupt()
    exc.checkpoints = None  # type: ignore[attr-defined]  # a training loop that writes none yet
    assert "--resume" in cli._kept_note(exc, "pretrain")
    for command in ("evaluate", "corrupt", "report"):
        assert "--resume" not in cli._kept_note(KeyboardInterrupt(), command).replace("has no --resume", "")


# ------------------------------------------------------------------------------------------ -C readers
def _set(images: object = None, labels: object = None, meta: object = None) -> Callable[[Path], Path]:
    """A CIFAR-10-C folder with fog at 4 images per severity; each argument replaces one file."""
    def make(tmp: Path) -> Path:
        root = tmp / "c10c"
        root.mkdir()
        np.save(root / "fog.npy", np.zeros((20, 32, 32, 3), np.uint8) if images is None else images)
        np.save(root / "labels.npy", np.tile(np.arange(4), 5) if labels is None else labels)
        if isinstance(meta, str):
            (root / "meta.json").write_text(meta)
        elif meta is not None:
            (root / "meta.json").write_text(json.dumps(meta))
        return root

    return make


META = {"n": 4, "size": 32, "severities": [1, 2, 3, 4, 5], "classes": [str(i) for i in range(10)]}


def _meta(**change: object) -> dict:
    return {k: v for k, v in {**META, **change}.items() if v is not None}


READER_CASES = [
    ("channels first", _set(images=np.zeros((20, 3, 32, 32), np.uint8)), "fog.npy"),
    ("RGBA", _set(images=np.zeros((20, 32, 32, 4), np.uint8)), "fog.npy"),
    ("float images", _set(images=np.zeros((20, 32, 32, 3), np.float32)), "fog.npy"),
    ("rows not a multiple of 5", _set(images=np.zeros((21, 32, 32, 3), np.uint8)), "fog.npy"),
    ("0-d labels", _set(labels=np.array(3)), "labels.npy"),
    ("one-hot labels", _set(labels=np.eye(10, dtype=np.int64)[np.tile(np.arange(4), 5)]), "one-hot"),
    ("float labels", _set(labels=np.tile(np.arange(4), 5).astype(np.float32)), "labels.npy"),
    ("label beyond cifar10's classes", _set(labels=np.full(20, 10)), "labels.npy"),
    ("negative label", _set(labels=np.full(20, -1)), "labels.npy"),
    ("wrong label count", _set(labels=np.zeros(7, np.int64)), "labels.npy"),
    ("pickled labels", _set(labels=np.array([object()] * 20, dtype=object)), "labels.npy"),
    ("meta without severities", _set(meta=_meta(severities=None)), "meta.json"),
    ("meta with no severities", _set(meta=_meta(severities=[])), "meta.json"),
    ("meta with a repeated severity", _set(meta=_meta(severities=[1, 2, 3, 3, 5])), "meta.json"),
    ("meta with severity 6", _set(meta=_meta(severities=[1, 2, 3, 4, 6])), "meta.json"),
    ("meta missing a severity", _set(meta=_meta(severities=[1, 2, 3, 5])), "4 severities"),
    ("meta with another n", _set(meta=_meta(n=5)), "fog.npy"),
    ("meta with another size", _set(meta=_meta(size=64)), "fog.npy"),
    ("label beyond the set's classes", _set(meta=_meta(classes=["a", "b", "c"])), "labels.npy"),
    ("malformed meta", _set(meta="{not json"), "meta.json"),
]


@pytest.mark.parametrize(("label", "make", "names"), READER_CASES, ids=[c[0] for c in READER_CASES])
def test_bad_c_set_is_rejected_by_eval(tmp_path: Path, label: str, make: Callable[[Path], Path],
                                       names: str) -> None:
    model = _model(tmp_path)
    root = make(tmp_path)
    expect_clean_error(tmp_path, ["eval", str(model), "--recipe", QUICK, "--suite", "cifar10-c",
                                  "--out", str(tmp_path / "o"),
                                  *sets(f"eval.corruptions.root='{root}'", "eval.corruptions.corruptions=['fog']")],
                       names)


def test_labels_beyond_the_models_classes_are_refused(tmp_path: Path) -> None:
    """A 5-class model on a CIFAR-10-C set whose labels reach 9: the corruption suite hands the reader the model's
    class count, which names labels.npy (`urrl eval` refuses the clean test split's 10 classes before this)."""
    from rich.console import Console

    from urrlkit.config import load
    from urrlkit.errors import UrrlError
    from urrlkit.evaluate.corruption_suite import run_corruptions
    from urrlkit.models import Classifier, build_encoder

    model = Classifier(build_encoder("resnet10", small_stem=True, width=4), 5).eval()
    root = _set(labels=np.tile(np.arange(6, 10), 5))(tmp_path)
    recipe = load(QUICK, [f"eval.corruptions.root='{root}'", "eval.corruptions.corruptions=['fog']",
                          "eval.corruptions.benchmark='cifar10-c'"])
    with pytest.raises(UrrlError, match=r"labels\.npy"):
        run_corruptions(model, recipe, "cifar10-c", None, torch.device("cpu"), None, Console(quiet=True))


def test_generated_set_passes_the_reader_checks(tmp_path: Path) -> None:
    from urrlkit.evaluate.corruptions import official as off

    _corrupt(tmp_path, tmp_path / "c")
    off.check_root(tmp_path / "c", "cifar10-c", ["fog"], "root")
    x, y = next(off.iter_npy(tmp_path / "c", "fog", 3, 8, num_classes=10))
    assert x.shape == (4, 3, 32, 32) and y.dtype == torch.int64
