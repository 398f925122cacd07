"""`urrl finetune` end to end on the bundled sample: every regularizer trains, sim with λ = 0 equals none
exactly, the sweep chooses on validation data by the recipe's criterion and the final model then trains on the
full training split, L2-SP's parameters get no weight decay, and CLI shorthands map onto the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.config import load
from urrlkit.errors import RecipeError, UrrlError
from urrlkit.finetune.workflow import apply_cli, cli_overrides, parse_sweep, run_finetune, selection_score
from urrlkit.hub import save_model
from urrlkit.models import build_encoder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random encoder whose BN running statistics are fitted to the data, as a pretrained one's are."""
    from urrlkit.data import DataRequest, build

    torch.manual_seed(0)
    enc = build_encoder("resnet10", small_stem=True, width=4)
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
    x = build("cifar10-sample", DataRequest(None, "train", 32)).images.float() / 255
    with torch.no_grad():
        for chunk in x.split(250):
            enc.train()(chunk)
    d = tmp_path_factory.mktemp("enc") / "model"
    save_model(enc.eval(), d)
    return d


def recipe(tmp_path: Path, name: str, *extra: str):
    return load(ROOT / "recipes" / "quickstart.toml", [
        "data.train_limit=96", "data.test_limit=64", "finetune.batch_size=32", "finetune.epochs=1",
        "eval.suites=[]", f"run.output_dir='{tmp_path}'", f"run.name='{name}'", *extra])


@pytest.mark.parametrize("reg", ["none", "l2sp", "sim", "adversarial"])
def test_each_regularizer_finetunes(tmp_path: Path, encoder_dir: Path, reg: str) -> None:
    extra = ["finetune.regularizer={type='adversarial', steps=2}"] if reg == "adversarial" else []
    out = run_finetune(recipe(tmp_path, "ft", *extra), str(encoder_dir), reg=None if extra else reg)
    scores = json.loads((out / "finetune.json").read_text())
    assert 0.0 <= scores["test_top1"] <= 100.0
    assert scores["train_images"] == 96 and "val_top1" not in scores  # no sweep: nothing is held out
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["kind"] == "classifier" and cfg["regularizer"]["type"] == reg
    before = load_file(str(encoder_dir / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    # both files use torchvision's names (urrlkit.hub.interop): the encoder's tensors keep theirs in the classifier
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "full protocol must update the encoder"


def test_sim_with_zero_weight_equals_none_exactly(tmp_path: Path, encoder_dir: Path) -> None:
    a = run_finetune(recipe(tmp_path / "a", "x"), str(encoder_dir), reg="none")
    b = run_finetune(recipe(tmp_path / "b", "x"), str(encoder_dir), reg="sim", reg_weight=0.0)
    wa, wb = load_file(str(a / "model" / "model.safetensors")), load_file(str(b / "model" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_linear_protocol_freezes_encoder(tmp_path: Path, encoder_dir: Path) -> None:
    out = run_finetune(recipe(tmp_path, "lin", "finetune.protocol='linear'"), str(encoder_dir), reg="none")
    before = load_file(str(encoder_dir / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)


def _steps(run: Path) -> int:
    """Optimizer steps of a run, from its metrics.jsonl (each epoch logs its last step)."""
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return max(r["step"] for r in rows if r.get("stage") == "finetune")


def test_sweep_picks_by_validation_then_trains_on_the_full_split(tmp_path: Path, encoder_dir: Path) -> None:
    out = run_finetune(recipe(tmp_path, "sw"), str(encoder_dir), reg="sim", sweep=["regularizer.weight=0,5"])
    record = json.loads((out / "sweep.json").read_text())
    trials = record["trials"]
    assert record["select"] == "clean" and [t["settings"]["regularizer.weight"] for t in trials] == [0.0, 5.0]
    assert all(t["score"] == t["val_top1"] and t["train_images"] == 96 - 10 for t in trials)
    best = max(trials, key=lambda t: t["val_top1"])
    assert record["chosen"] == best["settings"]
    assert load(out / "recipe.toml").finetune.regularizer.weight == best["settings"]["regularizer.weight"]
    # The final model saw all 96 training images: 3 steps of 32 (a trial on 86 images drops the last part batch).
    assert json.loads((out / "finetune.json").read_text())["train_images"] == 96
    assert _steps(out) == 3
    assert all(_steps(d) == 2 for d in (out / "sweep").iterdir())


def test_selection_criteria_choose_differently() -> None:
    """A trial set where clean top-1 and robust top-1 disagree: each criterion picks its own winner."""
    trials = [(80.0, 10.0), (70.0, 30.0), (60.0, 45.0)]  # (clean, robust)

    def pick(select: str, w: float = 0.5) -> int:
        return max(range(3), key=lambda i: selection_score(*trials[i], select, w))

    assert pick("clean") == 0 and pick("robust") == 2
    assert selection_score(70.0, 30.0, "mix", 0.25) == 0.75 * 70.0 + 0.25 * 30.0
    # mix scores clean + w·(robust − clean): 80 − 70w, 70 − 40w, 60 − 15w; the middle trial wins for 1/3 < w < 0.4.
    assert pick("mix", 0.25) == 0 and pick("mix", 0.36) == 1 and pick("mix", 0.5) == 2
    assert selection_score(1.0, None, "clean") == 1.0
    with pytest.raises(ValueError, match="robust"):
        selection_score(1.0, None, "robust")


@pytest.mark.parametrize("damage", [b"{not json", b"\xff\xfe", b"[" * 100000])
def test_a_damaged_sweep_record_on_resume_is_one_line(tmp_path: Path, encoder_dir: Path, damage: bytes) -> None:
    r = recipe(tmp_path, "sw")
    out = r.run_dir / "finetune-sim"
    out.mkdir(parents=True)
    (out / "sweep.json").write_bytes(damage)
    with pytest.raises(UrrlError, match=r"sweep\.json: sweep record .*; delete it to run the sweep again$"):
        run_finetune(r, str(encoder_dir), reg="sim", sweep=["regularizer.weight=0,5"], resume=True)
    assert (out / "sweep.json").read_bytes() == damage


def test_sweep_by_robust_accuracy_records_and_uses_it(tmp_path: Path, encoder_dir: Path) -> None:
    r = recipe(tmp_path, "rob", "finetune.select='robust'", "eval.adversarial.steps=2", "eval.adversarial.limit=8")
    out = run_finetune(r, str(encoder_dir), reg="sim", sweep=["regularizer.weight=0,5"])
    record = json.loads((out / "sweep.json").read_text())
    assert record["select"] == "robust"
    for t in record["trials"]:
        assert t["score"] == t["val_robust_top1"] and t["val_robust_top1"] in {100 * k / 8 for k in range(9)}
    best = max(record["trials"], key=lambda t: t["val_robust_top1"])
    assert record["chosen"] == best["settings"]
    assert load(out / "recipe.toml").finetune.select == "robust"


def test_l2sp_parameters_get_no_weight_decay(tmp_path: Path, encoder_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimizer the fine-tuning run trains with: weight decay 0 exactly on the parameters L2-SP regularizes
    (conv/linear weights of the encoder, the head's weight), the recipe's decay on the rest (BN γ/β, head bias)."""
    from urrlkit.finetune import train, workflow
    from urrlkit.finetune.regularizers import l2sp_parameters

    built: list[torch.optim.Optimizer] = []

    def recording(*args: object, **kwargs: object) -> torch.optim.Optimizer:
        built.append(runner_build(*args, **kwargs))
        return built[-1]

    runner_build = train.build_optimizer
    monkeypatch.setattr(train, "build_optimizer", recording)
    models = []
    real_train = workflow.train_classifier

    def keep_model(recipe, model, *args, **kwargs):  # type: ignore[no-untyped-def]
        models.append(model)
        return real_train(recipe, model, *args, **kwargs)

    monkeypatch.setattr(workflow, "train_classifier", keep_model)
    run_finetune(recipe(tmp_path, "wd", "finetune.weight_decay=5e-4"), str(encoder_dir), reg="l2sp")
    (opt,), (model,) = built, models
    sp, head = l2sp_parameters(model, "weights")
    assert sp and all(p.ndim >= 2 for p in sp.values()) and list(head) == ["head.weight"]
    regularized = {id(p) for p in [*sp.values(), *head.values()]}
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert set(decay) == {id(p) for p in model.parameters()}
    assert all(decay[id(p)] == (0.0 if id(p) in regularized else 5e-4) for p in model.parameters())
    assert decay[id(model.head.bias)] == 5e-4 and decay[id(model.head.weight)] == 0.0


def test_cli_shorthands_and_errors(tmp_path: Path) -> None:
    r = recipe(tmp_path, "c")
    assert apply_cli(r, "l2sp", 0.5).finetune.regularizer.alpha == 0.5
    assert apply_cli(r, None, 3.0).finetune.regularizer.weight == 3.0
    assert parse_sweep(["regularizer.weight=0.1,1"], {}) == {"regularizer.weight": [0.1, 1.0]}
    res = CliRunner().invoke(app, ["finetune", str(ROOT / "recipes" / "quickstart.toml"), "--from",
                                   str(tmp_path / "nope"), "--reg", "none"])
    assert res.exit_code == 2
    assert "nope" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["finetune", str(ROOT / "recipes" / "quickstart.toml"), "--from", "x",
                                   "--reg", "bogus"])
    assert res.exit_code == 2 and "regularizer" in res.output


def test_cli_shorthands_are_set_overrides(tmp_path: Path) -> None:
    """--reg / --reg-weight stand for exactly these --set overrides; applied to the recipe they give what --set
    gives, and their errors name the flag (tests/cli/test_bad_input.py pins the CLI's wording)."""
    assert cli_overrides("sim", None, None) == []
    assert cli_overrides("sim", None, 3.0) == ["finetune.regularizer.weight=3.0"]
    assert cli_overrides("sim", "l2sp", 0.5) == ["finetune.regularizer.type=\"l2sp\"", "finetune.regularizer.alpha=0.5"]
    assert cli_overrides("l2sp", "adversarial", 1e-5) == ["finetune.regularizer.type=\"adversarial\"",
                                                          "finetune.regularizer.eps=1e-05"]
    with pytest.raises(RecipeError, match=r"^--reg-weight: regularizer 'none' has no weight$"):
        cli_overrides("sim", "none", 1.0)
    with pytest.raises(RecipeError, match=r"^--reg-weight: regularizer 'custom' has no weight$"):
        cli_overrides("custom", None, 1.0)
    r = recipe(tmp_path, "c", "finetune.regularizer={type='l2sp', alpha=0.3, beta=0.2}")
    for reg, weight in [(None, 0.7), ("sim", None), ("sim", 2.0), ("l2sp", 0.1)]:
        via_set = recipe(tmp_path, "c", "finetune.regularizer={type='l2sp', alpha=0.3, beta=0.2}",
                         *cli_overrides("l2sp", reg, weight))
        assert apply_cli(r, reg, weight) == via_set
    assert apply_cli(r, None, 0.7).finetune.regularizer.model_dump() == {
        "type": "l2sp", "alpha": 0.7, "beta": 0.2, "params": "weights"}  # same type: its other fields are kept
    assert apply_cli(r, "sim", None).finetune.regularizer.model_dump() == {
        "type": "sim", "weight": 1.0, "norm": "fro", "normalize": False, "frozen_bn": "eval",
        "scale": "batch"}  # a new type starts from its defaults
    assert apply_cli(r, None, None) is r
    for reg, weight, message in [
            ("l3", None, "--reg: finetune.regularizer.type = 'l3' is not allowed; allowed: none, l2sp, sim, "
                         "adversarial, custom"),
            ("sim", -1.0, "--reg: finetune.regularizer.weight = -1.0 is out of range; allowed: weight >= 0"),
            ("sim", float("nan"), "--reg: finetune.regularizer.weight = nan is not allowed; allowed: a finite number"),
            ("l2sp", float("inf"), "--reg: finetune.regularizer.alpha = inf is not allowed; allowed: a finite number"),
            ("custom", None, "--reg: finetune.regularizer.name is required but missing")]:
        with pytest.raises(RecipeError) as err:
            apply_cli(r, reg, weight)
        assert str(err.value) == message


def test_finetune_resume_is_bit_identical(tmp_path: Path, encoder_dir: Path) -> None:
    from urrlkit.finetune.workflow import finetune_once
    from urrlkit.hub import load_backbone

    sets = ["finetune.epochs=2", "finetune.regularizer={type='sim', weight=0.001}"]
    a = run_finetune(recipe(tmp_path / "a", "x", *sets), str(encoder_dir))
    r = recipe(tmp_path / "b", "x", *sets)
    out = r.run_dir / "finetune-sim"
    finetune_once(r, load_backbone(encoder_dir), out, with_val=False, stop_after=3)  # killed mid-epoch 2
    assert (out / "checkpoints" / "latest").is_file()
    with pytest.raises(UrrlError, match="--resume"):
        run_finetune(r, str(encoder_dir))
    b = run_finetune(r, str(encoder_dir), resume=True)
    wa, wb = (load_file(str(p / "model" / "model.safetensors")) for p in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_saved_class_names_are_the_training_splits() -> None:
    """The head's outputs are the training split's label indices: a test split missing a class folder must not
    rename them (evaluation maps test labels by these names)."""
    from types import SimpleNamespace

    from urrlkit.finetune.workflow import class_names

    train, test = SimpleNamespace(classes=["cat", "dog", "fox"]), SimpleNamespace(classes=["cat", "fox"])
    assert class_names(train, test) == ["cat", "dog", "fox"]  # type: ignore[arg-type]
    assert class_names(SimpleNamespace(), test) == ["cat", "fox"]  # type: ignore[arg-type]
