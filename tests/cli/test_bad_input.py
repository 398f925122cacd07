"""Bad input, table-driven: every case must end with exit code 2, exactly one line on stderr that starts with
"error:" and names the field, file or id at fault, no traceback, and nothing on disk changed.

The `urrl` app runs in-process (typer's CliRunner), so a case costs milliseconds after the first.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from clean_error import expect_clean_error, sets
from typer.testing import CliRunner

from urrlkit.cli import app

ROOT = Path(__file__).resolve().parents[2]
QUICK = str(ROOT / "recipes" / "quickstart.toml")
TINY = [
    "data.train_limit=128", "data.test_limit=64", "data.batch_size=32", "model.backbone='resnet10'",
    "model.width=4", "pretext.queue_size=64", "pretext.head_dim=16", "pretext.bn_groups=2",
    "optim.epochs=1", "optim.log_every=2", "run.trackers=[]",
]


# ------------------------------------------------------------------------------------------ recipe values
# (--set value, text the error line must contain)
RECIPE_CASES: list[tuple[str, str] | pytest.param] = [
    ("run.seed=-1", "run.seed"), ("run.seed=4294967296", "run.seed"), ("run.seed=1.5", "run.seed"),
    ("run.seed='7'", "run.seed"), ("run.seed=true", "run.seed"),
    ("run.name='../../escape'", "run.name"), ("run.name='/abs'", "run.name"), ("run.name='a/b'", "run.name"),
    ("run.name='..'", "run.name"), ("run.name='.'", "run.name"), ("run.name=''", "run.name"),
    ("run.name='a\\\\b'", "run.name"), ("run.name=' padded'", "run.name"), ("run.name=3", "run.name"),
    ("run.trackers=['mlflow']", "run.trackers"), ("run.trackers='tensorboard'", "run.trackers"),
    ("run.nme='x'", "run.nme"), ("foo.bar=1", "foo"), ("optim.lrr=0.1", "optim.lrr"),
    ("data.batch_size=0", "data.batch_size"), ("data.batch_size=-4", "data.batch_size"),
    ("data.batch_size='big'", "data.batch_size"), ("data.batch_size=2.5", "data.batch_size"),
    ("data.image_size=4", "data.image_size"), ("data.image_size=100000", "data.image_size"),
    ("data.workers=-1", "data.workers"), ("data.dataset='cifar1O'", "data.dataset"),
    ("data.augment_in='gpu'", "data.augment_in"), ("data.augment_in='workers'", "augment_in"),
    ("data.train_limit=0", "data.train_limit"), ("data.test_limit=-1", "data.test_limit"),
    ("data.load_size=4", "data.load_size"),
    ("model.backbone='resnet1000'", "model.backbone"), ("model.backbone=50", "model.backbone"),
    ("model.width=0", "model.width"), ("model.width=-8", "model.width"),
    ("optim.epochs=0", "optim.epochs"), ("optim.epochs='ten'", "optim.epochs"),
    ("optim.momentum=1.0", "optim.momentum"), ("optim.momentum=-0.1", "optim.momentum"),
    ("optim.weight_decay=-1", "optim.weight_decay"), ("optim.grad_accum=0", "optim.grad_accum"),
    ("optim.mixed_precision='fp8'", "optim.mixed_precision"), ("optim.schedule='linear'", "optim.schedule"),
    ("optim.optimizer='lamb'", "optim.optimizer"), ("optim.lr=0", "optim.lr"), ("optim.lr=-0.1", "optim.lr"),
    ("optim.checkpoint_every=-1", "optim.checkpoint_every"), ("optim.log_every=0", "optim.log_every"),
    ("optim.warmup_epochs=-1", "optim.warmup_epochs"),
    ("pretext.method='simclr_v9'", "pretext.method"), ("pretext.p=1.5", "pretext.p"), ("pretext.p=-0.1", "pretext.p"),
    ("pretext.views=1", "pretext.views"), ("pretext.temperature=0", "pretext.temperature"),
    ("pretext.temperature=-1", "pretext.temperature"), ("pretext.queue_size=0", "pretext.queue_size"),
    ("pretext.momentum=1.5", "pretext.momentum"), ("pretext.head_dim=0", "pretext.head_dim"),
    ("pretext.bn_groups=0", "pretext.bn_groups"), ("pretext.bn_groups='many'", "pretext.bn_groups"),
    ("pretext.pirl_lambda=2", "pretext.pirl_lambda"),
    ("optim.lr=inf", "optim.lr"),
    ("optim.lr=nan", "optim.lr"),
    ("pretext.temperature=inf", "pretext.temperature"),
    ("pretext.temperature=nan", "pretext.temperature"),
    ("optim.weight_decay=inf", "optim.weight_decay"),
    ("pretext.queue_size=100", "pretext.queue_size"), ("pretext.bn_groups=3", "pretext.bn_groups"),
    # every float in a recipe must be finite; cross-field checks that would otherwise fail at the first step
    ("optim.lr_per_256=inf", "optim.lr_per_256"), ("pretext.momentum=nan", "pretext.momentum"),
    ("pretext.pirl_lambda=nan", "pretext.pirl_lambda"), ("finetune.lr=inf", "finetune.lr"),
    ("linear_eval.lr=inf", "linear_eval.lr"), ("linear_eval.weight_decay=inf", "linear_eval.weight_decay"),
    ("finetune.regularizer.weight=inf", "finetune.regularizer.weight"),
    ("eval.adversarial.eps=inf", "eval.adversarial.eps"), ("eval.adversarial.step_size=nan", "step_size"),
    ("finetune.sweep={lr=[0.1, inf]}", "finetune.sweep.lr"), ("run.seed=18446744073709551616", "run.seed"),
    ("data.batch_size=48", "pretext.queue_size"), ("pretext.bn_groups=5", "pretext.bn_groups"),
    ("finetune.regularizer={type='custom', name='x', params={a=nan}}", "finetune.regularizer.params.a"),
]


@pytest.mark.parametrize(("value", "names"), RECIPE_CASES)
def test_recipe_value_is_rejected_by_validate(tmp_path: Path, value: str, names: str) -> None:
    expect_clean_error(tmp_path, ["recipe", "validate", QUICK, *sets(value)], names)


# ------------------------------------------------------------------------------------------ recipe files
def _write(text: str) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        (tmp / "r.toml").write_text(text)
        return str(tmp / "r.toml")
    return make


def _family(name: str, params: str) -> Callable[[Path], str]:
    return _write(f"[pretext]\nfamilies = [{{ name = '{name}', params = {{ {params} }} }}]\n")


def _binary(tmp: Path) -> str:
    (tmp / "r.toml").write_bytes(b"\x80\x81\x00\xff" * 50)
    return str(tmp / "r.toml")


def _dir(tmp: Path) -> str:
    (tmp / "d.toml").mkdir()
    return str(tmp / "d.toml")


FILE_CASES: list[tuple[str, Callable[[Path], str], str]] = [
    ("missing", lambda tmp: str(tmp / "nope.toml"), "nope.toml"),
    ("directory", _dir, "d.toml"),
    ("binary", _binary, "r.toml"),
    ("bad toml", _write("[run\nname = 'x'\n"), "r.toml"),
    ("unclosed string", _write("[run]\nname = 'x\n"), "r.toml"),
    ("unknown section", _write("[runn]\nname = 'x'\n"), "runn"),
    ("unknown key", _write("[optim]\nlrr = 0.1\n"), "optim.lrr"),
    ("wrong type", _write("[optim]\nepochs = 'many'\n"), "optim.epochs"),
    ("section not a table", _write("optim = 3\n"), "optim"),
    ("extends missing", _write("extends = 'missing_base.toml'\n"), "missing_base.toml"),
    ("extends itself", _write("extends = 'r.toml'\n"), "r.toml"),
    ("extends not a string", _write("extends = 3\n"), "extends"),
    ("family unknown", _write("[pretext]\nfamilies = [{ name = 'augmix_alop' }]\n"), "augmix_alop"),
    ("family param unknown", _write("[pretext]\nfamilies = [{ name = 'moco_v2', params = { scale_mn = 0.2 } }]\n"),
     "scale_mn"),
    ("family weight negative", _write("[pretext]\nfamilies = [{ name = 'moco_v2', weight = -1.0 }]\n"), "weight"),
    ("family weight inf", _write("[pretext]\nfamilies = [{ name = 'moco_v2', weight = inf }]\n"), "weight"),
    *[(f"family {name} {text}", _family(name, text), f"pretext.families[0].params.{text.split(' =')[0]}")
      for name, text in [
          ("moco_v2", "scale_min = 1.5"), ("moco_v2", "scale_min = 0.9, scale_max = 0.5"), ("moco_v2", "hue = 0.9"),
          ("moco_v2", "jitter_p = 2"), ("moco_v2", "blur_sigma_min = 0"), ("moco_v2", "brightness = -1"),
          ("moco_v2", "flip = 'yes'"), ("moco_v2", "scale_min = inf"), ("moco_v2", "scale_min = [1]"),
          ("augmix", "width = 2.5"), ("augmix", "width = 0"), ("augmix", "severity = 50"), ("augmix", "crop = 'x'"),
          ("augmix", "crop = 3"), ("augmix", "depth = 1.5"), ("augmix_allop", "scale_min = 0"),
          ("augmix_moco", "all_ops = 'no'"), ("instdis", "hue = 0.6"), ("instdis", "grayscale_first = 1"),
          ("instdis", "scale_max = 2")]],
]


@pytest.mark.parametrize(("label", "make", "names"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_recipe_file_is_rejected(tmp_path: Path, label: str, make: Callable[[Path], str], names: str) -> None:
    path = make(tmp_path)
    expect_clean_error(tmp_path, ["recipe", "validate", path], names)


# ------------------------------------------------------------------------------------------ model folders
def _model(tmp: Path) -> Path:
    from urrlkit.hub import save_model
    from urrlkit.models import Classifier, build_encoder

    torch.manual_seed(0)
    return save_model(Classifier(build_encoder("resnet10", small_stem=True, width=4), 10), tmp / "m")


def _edit_config(change: Callable[[dict], None]) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        d = _model(tmp)
        cfg = json.loads((d / "config.json").read_text())
        change(cfg)
        (d / "config.json").write_text(json.dumps(cfg))
        return str(d)
    return make


def _replace(name: str, data: bytes | Callable[[Path], bytes]) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        d = _model(tmp)
        (d / name).write_bytes(data(tmp) if callable(data) else data)
        return str(d)
    return make


def _pickle_bytes(tmp: Path) -> bytes:
    return pickle.dumps({"weight": 1})


def _other_weights(tmp: Path) -> bytes:
    from safetensors.torch import save

    return save({"trunk.conv1.weight": torch.zeros(2, 3, 3, 3)})


def _set(path: str, value: object) -> Callable[[dict], None]:
    def change(cfg: dict) -> None:
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        node[last] = value
    return change


MODEL_CASES: list[tuple[str, Callable[[Path], str], str]] = [
    ("no such path", lambda tmp: str(tmp / "nowhere" / "model"), "nowhere"),
    ("bad hub id", lambda tmp: "org/a--b", "org/a--b"),
    ("hub id trailing dash", lambda tmp: "org/name-", "org/name-"),
    ("hub id too long", lambda tmp: "org/" + "x" * 100, "org/xxx"),
    ("config not json", _replace("config.json", b"{not json"), "config.json"),
    ("config a list", _replace("config.json", b"[1, 2]"), "config.json"),
    ("config empty object", _replace("config.json", b"{}"), "config.json"),
    ("width huge", _edit_config(_set("encoder.width", 10**6)), "encoder.width"),
    ("width string", _edit_config(_set("encoder.width", "4")), "encoder.width"),
    ("backbone unknown", _edit_config(_set("encoder.backbone", "vit_h")), "encoder.backbone"),
    ("backbone not a string", _edit_config(_set("encoder.backbone", None)), "encoder.backbone"),
    ("num_classes huge", _edit_config(_set("num_classes", 10**12)), "num_classes"),
    ("num_classes negative", _edit_config(_set("num_classes", -3)), "num_classes"),
    ("num_classes mismatched", _edit_config(_set("num_classes", 100)), "fc.weight"),
    ("width mismatched", _edit_config(_set("encoder.width", 8)), "conv1.weight"),
    ("std zero", _edit_config(_set("encoder.std", [0.0, 0.2, 0.2])), "encoder.std"),
    ("mean short", _edit_config(_set("encoder.mean", [0.5])), "encoder.mean"),
    ("kind unknown", _edit_config(_set("kind", "detector")), "kind"),
    ("weights a pickle", _replace("model.safetensors", _pickle_bytes), "model.safetensors"),
    ("weights empty", _replace("model.safetensors", b""), "model.safetensors"),
    ("weights truncated", _replace("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":"),
     "model.safetensors"),
    ("weights of another model", _replace("model.safetensors", _other_weights), "model.safetensors"),
]


@pytest.mark.parametrize(("label", "make", "names"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model_is_rejected_by_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str,
                                       make: Callable[[Path], str], names: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = make(tmp_path)
    expect_clean_error(tmp_path, ["eval", name, "--out", str(tmp_path / "eval-out")], names)


@pytest.mark.parametrize("repo", ["org/a--b", "org/name-", "org/" + "x" * 100, "no-slash", "a/b/c"])
def test_bad_hub_id_is_rejected_by_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repo: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expect_clean_error(tmp_path, ["pull", repo], repo[:10])


# ------------------------------------------------------------------------------------------ run directories
def _run_with_checkpoint(tmp: Path) -> Path:
    """A tiny pretraining run stopped after its first checkpoint (built once per test that needs it)."""
    from urrlkit.config import load
    from urrlkit.pretext.workflow import pretrain

    pretrain(load(QUICK, [*TINY, f"run.output_dir='{tmp / 'runs'}'", "run.name='r'", "optim.checkpoint_every=2"]),
             stop_after=2)
    return tmp / "runs" / "r"


def _break_latest(content: str) -> Callable[[Path], None]:
    def make(run: Path) -> None:
        (run / "checkpoints" / "latest").write_text(content)
    return make


def _plant(name: str) -> Callable[[Path], None]:
    def make(run: Path) -> None:
        ck = run / "checkpoints"
        (ck / (ck / "latest").read_text() / name).write_bytes(pickle.dumps({"x": 1}))
    return make


RESUME_CASES: list[tuple[str, Callable[[Path], None], list[str], str]] = [
    ("latest escapes", _break_latest("../../x"), [], "latest"),
    ("latest absolute", _break_latest("/etc"), [], "latest"),
    ("latest names nothing", _break_latest("step-99999999"), [], "latest"),
    ("state.json a pickle", _plant("state.json"), [], "state.json"),
    ("model a pickle", _plant("model.safetensors"), [], "model.safetensors"),
    ("optimizer a pickle", _plant("optimizer.safetensors"), [], "optimizer.safetensors"),
    ("rank file a pickle", _plant("rank-0.safetensors"), [], "rank-0.safetensors"),
    ("changed model", lambda run: None, ["model.width=8"], "model.width"),
    ("changed pretext", lambda run: None, ["pretext.p=0.25"], "pretext.p"),
    ("changed seed", lambda run: None, ["run.seed=3"], "run.seed"),
]


@pytest.mark.parametrize(("label", "damage", "extra", "names"), RESUME_CASES, ids=[c[0] for c in RESUME_CASES])
def test_bad_resume_is_rejected(tmp_path: Path, label: str, damage: Callable[[Path], None], extra: list[str],
                                names: str) -> None:
    run = _run_with_checkpoint(tmp_path)
    damage(run)
    args = ["pretrain", QUICK, "--no-linear-eval", "--resume",
            *sets(*TINY, f"run.output_dir='{tmp_path / 'runs'}'", "run.name='r'", "optim.checkpoint_every=2", *extra)]
    expect_clean_error(tmp_path, args, names)


def test_fresh_start_over_a_run_with_checkpoints_is_refused(tmp_path: Path) -> None:
    _run_with_checkpoint(tmp_path)
    args = ["pretrain", QUICK, "--no-linear-eval",
            *sets(*TINY, f"run.output_dir='{tmp_path / 'runs'}'", "run.name='r'", "optim.checkpoint_every=2")]
    expect_clean_error(tmp_path, args, "--resume")


# ------------------------------------------------------------------------------------------ array data
def _npz(**change: object) -> Callable[[Path], None]:
    """A valid 3-class npz training split (24 images, 32 px), with `change` applied (None drops a key)."""
    def make(root: Path) -> None:
        import numpy as np

        rng = np.random.default_rng(0)
        arrays: dict[str, object] = {"images": rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8),
                                     "labels": np.arange(24) % 3, "classes": np.array(["a", "b", "c"])}
        arrays.update(change)
        root.mkdir(parents=True, exist_ok=True)
        np.savez(root / "train.npz", **{k: v for k, v in arrays.items() if v is not None})
    return make


def _object_npz(root: Path) -> None:
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / "train.npz", images=np.array([{"evil": 1}] * 4, dtype=object), labels=np.zeros(4, dtype=int))


def _not_npz(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.npz").write_bytes(pickle.dumps({"images": 1}))


def _arr(*shape: int, dtype: str = "uint8", fill: int = 0) -> object:
    import numpy as np

    return np.full(shape, fill, dtype=dtype)


DATA_CASES: list = [
    ("no root", lambda root: None, "npz"),
    ("not an npz", _not_npz, "train.npz"),
    ("object arrays (pickle)", _object_npz, "train.npz"),
    ("no images key", _npz(images=None), "images"),
    ("no labels key", _npz(labels=None), "labels"),
    pytest.param("labels out of range", _npz(labels=_arr(24, dtype="int64", fill=7)), "labels"),
    pytest.param("negative labels", _npz(labels=_arr(24, dtype="int64", fill=-1)), "labels"),
    pytest.param("float labels", _npz(labels=_arr(24, dtype="float32", fill=1)), "labels"),
    pytest.param("count mismatch", _npz(labels=_arr(20, dtype="int64")), "labels"),
    pytest.param("empty split", _npz(images=_arr(0, 32, 32, 3), labels=_arr(0, dtype="int64")), "train.npz"),
    ("grey images", _npz(images=_arr(24, 32, 32)), "images"),
    ("channels first", _npz(images=_arr(24, 3, 32, 32)), "images"),
    ("float images", _npz(images=_arr(24, 32, 32, 3, dtype="float32")), "images"),
    ("non-square images", _npz(images=_arr(24, 32, 48, 3)), "32x48"),
    ("zero-pixel images", _npz(images=_arr(24, 0, 0, 3)), "0x0"),
    ("one-hot labels", _npz(labels=_arr(24, 3, dtype="int64")), "labels"),
    ("bool labels", _npz(labels=_arr(24, dtype="bool")), "labels"),
    ("fewer classes than labels", _npz(classes=_arr(1, dtype="<U1")), "train.npz"),
    ("more labels than images", _npz(labels=_arr(30, dtype="int64")), "30 labels"),
    ("no classes, negative labels", _npz(labels=_arr(24, dtype="int64", fill=-3), classes=None), "labels"),
]


def _empty_folder_split(root: Path) -> None:
    (root / "train" / "cat").mkdir(parents=True)  # a class folder with no images


def test_empty_image_folder_split_is_rejected(tmp_path: Path) -> None:
    _empty_folder_split(tmp_path / "data")
    args = ["recipe", "views", QUICK, "--out", str(tmp_path / "views.png"), "--images", "2",
            *sets("data.dataset='imagefolder'", f"data.root='{tmp_path / 'data'}'")]
    expect_clean_error(tmp_path, args, str(tmp_path / "data" / "train"))


@pytest.mark.parametrize(("label", "make", "names"), DATA_CASES,
                         ids=[c.values[0] if hasattr(c, "values") else c[0] for c in DATA_CASES])
def test_bad_array_data_is_rejected(tmp_path: Path, label: str, make: Callable[[Path], None], names: str) -> None:
    make(tmp_path / "data")
    args = ["recipe", "views", QUICK, "--out", str(tmp_path / "views.png"), "--images", "2",
            *sets("data.dataset='npz'", f"data.root='{tmp_path / 'data'}'")]
    expect_clean_error(tmp_path, args, names)


# ------------------------------------------------------------------------------------------ command options
def _file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("x")
    return tmp / "a-file"


def _twenty_classes(tmp: Path) -> Path:
    import numpy as np

    (tmp / "d").mkdir()
    np.savez(tmp / "d" / "test.npz", images=np.zeros((40, 32, 32, 3), np.uint8), labels=np.arange(40) % 20)
    return tmp / "d"


def _train_only(tmp: Path) -> Path:
    _npz()(tmp / "d")
    return tmp / "d"


def _broken_train(tmp: Path) -> Path:
    """A readable test split beside a training split whose labels are negative."""
    import numpy as np

    _npz(labels=np.arange(24) % 3 - 1)(tmp / "d")
    _npz()(tmp / "t")
    (tmp / "t" / "train.npz").rename(tmp / "d" / "test.npz")
    return tmp / "d"


def _png_dir(tmp: Path) -> str:
    (tmp / "v.png").mkdir()
    return str(tmp / "v.png")


def _trusted_payload(tmp: Path) -> Path:
    """A MoCo-looking checkpoint that runs code when unpickled: `urrl convert` must refuse it (weights_only)."""
    class Payload:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    torch.save({"state_dict": Payload()}, tmp / "moco.pth.tar")
    return tmp / "moco.pth.tar"


OPTION_CASES: list = [
    ("pretrain output_dir is a file", lambda tmp: ["pretrain", QUICK, "--no-linear-eval",
                                                   *sets(*TINY, f"run.output_dir='{_file(tmp)}'")], "a-file"),
    ("finetune unknown reg", lambda tmp: ["finetune", QUICK, "--from", str(_model(tmp)), "--reg", "l3",
                                          *sets(f"run.output_dir='{tmp / 'runs'}'")], "l3"),
    ("finetune bad sweep", lambda tmp: ["finetune", QUICK, "--from", str(_model(tmp)), "--sweep", "nonsense",
                                        *sets(f"run.output_dir='{tmp / 'runs'}'")], "nonsense"),
    ("finetune sweep unknown key", lambda tmp: ["finetune", QUICK, "--from", str(_model(tmp)), "--sweep",
                                                "nonsense=1,2", *sets(f"run.output_dir='{tmp / 'runs'}'")],
     "finetune.nonsense"),
    ("finetune sweep inf", lambda tmp: ["finetune", QUICK, "--from", str(_model(tmp)), "--sweep", "lr=0.1,inf",
                                        *sets(f"run.output_dir='{tmp / 'runs'}'")], "finetune.lr"),
    ("finetune sweep without validation data", lambda tmp: [
        "finetune", QUICK, "--from", str(_model(tmp)), "--sweep", "lr=0.1,1",
        *sets(f"run.output_dir='{tmp / 'runs'}'", "finetune.val_fraction=0")], "finetune.val_fraction"),
    ("finetune without a test split", lambda tmp: [
        "finetune", QUICK, "--from", str(_model(tmp)), *sets(f"run.output_dir='{tmp / 'runs'}'", "data.dataset='npz'",
                                                               f"data.root='{_train_only(tmp)}'")], "test.npz"),
    ("finetune with a broken training split", lambda tmp: [
        "finetune", QUICK, "--from", str(_model(tmp)), *sets(f"run.output_dir='{tmp / 'runs'}'", "data.dataset='npz'",
                                                               f"data.root='{_broken_train(tmp)}'")], "train.npz"),
    ("finetune output_dir is a file", lambda tmp: ["finetune", QUICK, "--from", str(_model(tmp)),
                                                   *sets(f"run.output_dir='{_file(tmp)}'")], "a-file"),
    ("views out under a file", lambda tmp: ["recipe", "views", QUICK, "--out", str(_file(tmp) / "v.png"), "-n", "1"],
     "a-file/v.png"),
    ("views out not an image name", lambda tmp: ["recipe", "views", QUICK, "--out", str(tmp / "v.toml"), "-n", "1"],
     "v.toml"),
    ("views out is a folder", lambda tmp: ["recipe", "views", QUICK, "--out", _png_dir(tmp), "-n", "1"], "v.png"),
    ("pretrain bad family parameter", lambda tmp: [
        "pretrain", _family("moco_v2", "hue = 2")(tmp), "--no-linear-eval",
        *sets(f"run.output_dir='{tmp / 'runs'}'")], "pretext.families[0].params.hue"),
    ("finetune missing model", lambda tmp: ["finetune", QUICK, "--from", str(tmp / "missing"),
                                            *sets(f"run.output_dir='{tmp / 'runs'}'")], "missing"),
    ("eval on more classes than the model has", lambda tmp: [
        "eval", str(_model(tmp)), "--recipe", QUICK, "--out", str(tmp / "o"),
        *sets("data.dataset='npz'", f"data.root='{_twenty_classes(tmp)}'")], "test.npz"),
    ("eval unknown suite", lambda tmp: ["eval", str(_model(tmp)), "--suite", "imagenet-x", "--recipe", QUICK,
                                        "--out", str(tmp / "o")], "imagenet-x"),
    ("corrupt unknown data set", lambda tmp: ["corrupt", "cifar1O", "--out", str(tmp / "c")], "cifar1O"),
    ("corrupt unknown corruption", lambda tmp: ["corrupt", "cifar10-sample", "--out", str(tmp / "c"),
                                                "-c", "gaussian_nose"], "gaussian_nose"),
    ("replica bad seeds", lambda tmp: ["replica", "--seeds", "a,b", "--out", str(tmp / "rep"), "--dry-run"],
     "--seeds"),
    ("replica no seeds", lambda tmp: ["replica", "--seeds", ",", "--out", str(tmp / "rep"), "--dry-run"], "--seeds"),
    ("push bad repo id", lambda tmp: ["push", str(_model(tmp)), "--repo", "org/a--b", "--dry-run",
                                      str(tmp / "up")], "org/a--b"),
    ("push not a model", lambda tmp: ["push", str(tmp), "--repo", "org/ok", "--dry-run", str(tmp / "up")],
     "not a run directory or model directory"),
    ("convert not a checkpoint", lambda tmp: ["convert", str(_file(tmp)), "--out", str(tmp / "conv")], "a-file"),
    ("convert a code-running pickle", lambda tmp: ["convert", str(_trusted_payload(tmp)), "--out",
                                                   str(tmp / "conv")], "moco.pth.tar"),
    ("convert missing file", lambda tmp: ["convert", str(tmp / "nope.pth"), "--out", str(tmp / "conv")],
     "nope.pth"),
]


@pytest.mark.parametrize(("label", "make", "names"), OPTION_CASES,
                         ids=[c.values[0] if hasattr(c, "values") else c[0] for c in OPTION_CASES])
def test_bad_command_options_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, label: str,
                                          make: Callable[[Path], list[str]], names: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = make(tmp_path)
    expect_clean_error(tmp_path, args, names)


# ------------------------------------------------------------------------------------------ the checker
def test_finetune_refuses_a_test_split_with_classes_train_lacks(tmp_path: Path) -> None:
    """Found only after training (the train split is read there), but before any score or model is written."""
    import numpy as np

    data = tmp_path / "d"
    _npz()(data)
    np.savez(data / "test.npz", images=np.zeros((10, 32, 32, 3), np.uint8), labels=np.arange(10) % 5)
    args = ["finetune", QUICK, "--from", str(_model(tmp_path)),
            *sets(f"run.output_dir='{tmp_path / 'runs'}'", "data.dataset='npz'", f"data.root='{data}'",
                  "finetune.epochs=1", "finetune.batch_size=8", "eval.suites=[]")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.stderr[-2000:], repr(result.exception))
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {data / 'test.npz'}: the test split has 5 classes, but the model predicts 3; evaluate on the data "
        "set it was trained for (data.dataset)")  # after the training log
    assert not list((tmp_path / "runs").rglob("finetune.json")) and not list((tmp_path / "runs").rglob("model"))
