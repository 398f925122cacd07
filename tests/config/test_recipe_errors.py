"""Malformed recipes give one documented line on stderr, exit code 2 and no traceback:
malformed TOML → file:line:column; unknown key → dotted path + nearest valid name; bad value → dotted path
+ the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from urrlkit import registry
from urrlkit.cli import app
from urrlkit.errors import RecipeError

FAMILY_NAMES = ("moco_v2", "augmix", "augmix_allop", "augmix_moco")


def _stub_family(image_size: int = 32) -> None:
    """Stands in for a family factory; only its signature matters to validation."""


@pytest.fixture(autouse=True)
def families(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in FAMILY_NAMES:
        if name not in registry.FAMILIES:
            monkeypatch.setitem(registry.FAMILIES._items, name, _stub_family)


# (id, recipe text, fragments the one error line must contain)
CASES: list[tuple[str, str, list[str]]] = [
    # malformed TOML: file, line and column
    ("toml-missing-value", "[optim]\nlr = \n", ["bad.toml:2:6:", "malformed TOML"]),
    ("toml-unclosed-table", "[run]\nname = 'a'\n[optim\nlr = 0.1\n", ["bad.toml:3:7:", "malformed TOML"]),
    ("toml-duplicate-key", "[optim]\nlr = 0.1\nlr = 0.2\n", ["bad.toml:3:", "malformed TOML"]),
    ("toml-unterminated-string", '[run]\nname = "abc\n', ["bad.toml:2:", "malformed TOML"]),
    ("toml-bare-word", "[data]\ndataset = cifar10\n", ["bad.toml:2:", "malformed TOML"]),
    # unknown keys: dotted path and the nearest valid name
    ("unknown-top-level", "[optimm]\nlr = 0.1\n", ["unknown key optimm", "did you mean 'optim'"]),
    ("unknown-key", "[optim]\nlrr = 0.1\n", ["unknown key optim.lrr", "did you mean 'lr'"]),
    ("unknown-nested-key", "[pretext]\ntemprature = 0.2\n",
     ["unknown key pretext.temprature", "did you mean 'temperature'"]),
    ("unknown-regularizer-key", "[finetune.regularizer]\ntype = 'sim'\nwieght = 1.0\n",
     ["unknown key finetune.regularizer.wieght", "did you mean 'weight'"]),
    ("unknown-eval-key", "[eval.adversarial]\nepsilon = 0.5\n",
     ["unknown key eval.adversarial.epsilon", "did you mean 'eps'"]),
    ("unknown-family-key", "[[pretext.families]]\nname = 'augmix'\nwheight = 1\n",
     ["unknown key pretext.families[0].wheight", "did you mean 'weight'"]),
    # out-of-range values: dotted path and the allowed range
    ("p-above-one", "[pretext]\np = 1.5\n", ["pretext.p = 1.5", "allowed: 0 <= p <= 1"]),
    ("p-negative", "[pretext]\np = -0.1\n", ["pretext.p = -0.1", "allowed: 0 <= p <= 1"]),
    ("negative-family-weight", "[[pretext.families]]\nname = 'augmix'\nweight = -1.0\n",
     ["pretext.families[0].weight = -1.0", "allowed: weight >= 0"]),
    ("negative-sim-weight", "[finetune.regularizer]\ntype = 'sim'\nweight = -2\n",
     ["finetune.regularizer.weight = -2", "allowed: weight >= 0"]),
    ("zero-temperature", "[pretext]\ntemperature = 0\n", ["pretext.temperature = 0", "temperature > 0"]),
    ("tiny-image-size", "[data]\nimage_size = 4\n", ["data.image_size = 4", "8 <= image_size <= 1024"]),
    ("zero-batch", "[data]\nbatch_size = 0\n", ["data.batch_size = 0", "batch_size >= 1"]),
    ("val-fraction-one", "[finetune]\nval_fraction = 1.0\n",
     ["finetune.val_fraction", "0 <= val_fraction < 1"]),
    ("severity-out-of-range", "[eval.corruptions]\nseverities = [0, 3, 6]\n",
     ["eval.corruptions.severities", "1..5"]),
    # unknown names: dotted path and the allowed values
    ("unknown-backbone", "[model]\nbackbone = 'resnet51'\n",
     ["model.backbone", "did you mean 'resnet50'", "allowed: ", "resnet18"]),
    ("unknown-dataset", "[data]\ndataset = 'cifar11'\n",
     ["data.dataset", "did you mean 'cifar10'", "allowed: ", "tiny-imagenet"]),
    ("unknown-finetune-dataset", "[finetune]\ndataset = 'flowers'\n",
     ["finetune.dataset", "did you mean 'flowers102'", "allowed: "]),
    ("unknown-family", "[[pretext.families]]\nname = 'augmx'\n",
     ["pretext.families[0].name", "did you mean 'augmix'", "allowed: ", "moco_v2"]),
    ("unknown-regularizer", "[finetune.regularizer]\ntype = 'simm'\n",
     ["finetune.regularizer.type = 'simm'", "did you mean 'sim'", "allowed: none, l2sp, sim, adversarial"]),
    ("missing-regularizer-type", "[finetune.regularizer]\nweight = 1.0\n",
     ["finetune.regularizer.type is missing", "allowed: none, l2sp, sim"]),
    ("bad-literal", "[optim]\nmixed_precision = 'bf17'\n",
     ["optim.mixed_precision = 'bf17'", "did you mean 'bf16'", "allowed: no, fp16, bf16"]),
    ("bad-list-literal", "[eval]\nsuites = ['clean', 'calib']\n",
     ["eval.suites[1] = 'calib'", "did you mean 'calibration'"]),
    ("bad-method", "[pretext]\nmethod = 'mocov2'\n", ["pretext.method = 'mocov2'", "did you mean 'moco_v2'",
                                                       "instdis", "pirl"]),
    # wrong types
    ("wrong-type", "[optim]\nepochs = 'ten'\n", ["optim.epochs", "integer", "'ten'"]),
    ("section-not-table", "optim = 3\n", ["optim:", "got 3"]),
    ("unknown-family-param", "[[pretext.families]]\nname = 'augmix'\nparams = { sevrity = 3 }\n",
     ["pretext.families[0]", "unknown parameter 'sevrity'", "allowed: "]),
    ("missing-family-name", "[[pretext.families]]\nweight = 1.0\n", ["pretext.families[0].name is required"]),
    # cross-field rules
    ("p-and-families", "[pretext]\np = 0.5\nfamilies = [{ name = 'augmix' }]\n", ["pretext:", "either p"]),
    ("all-zero-weights", "[pretext]\nfamilies = [{ name = 'augmix', weight = 0 }]\n",
     ["pretext:", "weights"]),
    ("augment-in-workers-without-workers", "[data]\naugment_in = 'workers'\n",
     ["data:", "augment_in = 'workers' needs workers ≥ 1"]),
    ("bad-augment-in", "[data]\naugment_in = 'gpu'\n", ["data.augment_in = 'gpu'", "auto, device, workers"]),
    ("queue-not-multiple-of-batch", "[data]\nbatch_size = 64\n[pretext]\nqueue_size = 100\n",
     ["pretext.queue_size: 100 is not a multiple of data.batch_size = 64"]),
    ("bn-groups-not-dividing-batch", "[data]\nbatch_size = 64\n[pretext]\nbn_groups = 3\n",
     ["pretext.bn_groups: 3 does not divide data.batch_size = 64"]),
    # non-finite floats, family parameters checked by building the family
    ("infinite-lr", "[optim]\nlr = inf\n", ["optim.lr = inf", "allowed: a finite number"]),
    ("nan-temperature", "[pretext]\ntemperature = nan\n", ["pretext.temperature = nan", "a finite number"]),
    ("infinite-family-param", "[[pretext.families]]\nname = 'augmix'\nparams = { severity = inf }\n",
     ["pretext.families[0].params.severity: inf is not a finite number"]),
    ("family-param-wrong-type", "[[pretext.families]]\nname = 'augmix'\nparams = { width = 'three' }\n",
     ["pretext.families[0].params.width", "expected an integer, got 'three'"]),
    ("family-param-out-of-range", "[[pretext.families]]\nname = 'moco_v2'\nparams = { grayscale_p = 1.5 }\n",
     ["pretext.families[0].params.grayscale_p: must be in [0, 1], got 1.5", "family 'moco_v2'"]),
    # extends
    ("extends-missing", "extends = 'nope.toml'\n", ["bad.toml: extends", "nope.toml"]),
    ("extends-not-string", "extends = 3\n", ["bad.toml: extends", "3"]),
    ("extends-self", "extends = 'bad.toml'\n", ["circular extends (bad.toml -> bad.toml)"]),
]


def _assert_one_line(result: Result, fragments: list[str]) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    lines = result.stderr.strip("\n").split("\n")
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ")
    for frag in fragments:
        assert frag in line, f"{frag!r} not in {line!r}"
    return line


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_recipe_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                   fragments: list[str]) -> None:
    monkeypatch.chdir(tmp_path)  # the file is named as the user typed it: bad.toml
    Path("bad.toml").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["recipe", "validate", "bad.toml"])
    line = _assert_one_line(result, fragments)
    assert line.startswith("error: bad.toml")


def test_error_in_parent_names_parent_file(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text("[optim]\nlr = = 1\n")
    (tmp_path / "child.toml").write_text("extends = 'base.toml'\n")
    result = CliRunner().invoke(app, ["recipe", "validate", str(tmp_path / "child.toml")])
    _assert_one_line(result, [f"{tmp_path / 'base.toml'}:2:", "malformed TOML"])


def test_circular_extends_cli(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("extends = 'b.toml'\n")
    (tmp_path / "b.toml").write_text("extends = 'a.toml'\n")
    result = CliRunner().invoke(app, ["recipe", "validate", str(tmp_path / "a.toml")])
    _assert_one_line(result, ["circular extends (a.toml -> b.toml -> a.toml)"])


def test_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["recipe", "validate", str(tmp_path / "none.toml")])
    _assert_one_line(result, ["none.toml: recipe file not found"])


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    result = CliRunner().invoke(app, ["recipe", "validate", str(tmp_path / "bin.toml")])
    _assert_one_line(result, ["bin.toml: not a UTF-8 text file"])


@pytest.mark.parametrize(("sets", "fragments"), [
    (["optim.lr"], ["--set 'optim.lr'", "KEY=VALUE"]),
    (["optim..lr=1"], ["--set 'optim..lr=1'", "KEY=VALUE"]),
    (["optim.lrr=0.1"], ["unknown key optim.lrr", "did you mean 'lr'"]),
    (["optim.lr=-1"], ["optim.lr = -1", "lr > 0"]),
    (["optim.lr.x=1"], ["'lr' is a value, not a table"]),
    (["pretext.p=2"], ["pretext.p = 2", "0 <= p <= 1"]),
])
def test_bad_set(tmp_path: Path, sets: list[str], fragments: list[str]) -> None:
    (tmp_path / "ok.toml").write_text("[optim]\nlr = 0.1\n")
    args = ["recipe", "validate", str(tmp_path / "ok.toml")]
    for s in sets:
        args += ["--set", s]
    _assert_one_line(CliRunner().invoke(app, args), fragments)


def test_several_files_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("[optim]\nlrr = 1\n")
    (tmp_path / "b.toml").write_text("[optim]\nlr = 0.5\n")
    (tmp_path / "c.toml").write_text("[pretext]\np = 3\n")
    result = CliRunner().invoke(app, ["recipe", "validate", *(str(tmp_path / f"{f}.toml") for f in "abc")])
    assert result.exit_code == 2
    assert len(result.stderr.strip().split("\n")) == 2 and "ok: " in result.stdout


def test_more_errors_are_counted(tmp_path: Path) -> None:
    (tmp_path / "m.toml").write_text("[data]\nimage_size = 4\nbatch_size = 0\n")
    result = CliRunner().invoke(app, ["recipe", "validate", str(tmp_path / "m.toml")])
    _assert_one_line(result, ["data.image_size = 4", "(+1 more)"])


def test_debug_shows_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[optim]\nlrr = 1\n")
    plain = CliRunner().invoke(app, ["recipe", "show", str(tmp_path / "bad.toml")])
    _assert_one_line(plain, ["unknown key optim.lrr"])
    debug = CliRunner().invoke(app, ["--debug", "recipe", "show", str(tmp_path / "bad.toml")])
    assert isinstance(debug.exception, RecipeError)  # re-raised: the runner would print its traceback
    assert debug.exc_info is not None and debug.exc_info[2] is not None
