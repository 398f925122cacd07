"""The recipe DSL: shipped recipes validate, `extends` / `--set` compose as documented, `recipe show`
round-trips. One-line error messages are tested through the CLI in test_recipe_errors.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from urrlkit import registry
from urrlkit.cli import app
from urrlkit.config import L2SPReg, Recipe, SimReg, deep_merge, load, parse_override
from urrlkit.errors import RecipeError

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").rglob("*.toml"))
PAPER_FAMILIES = ("moco_v2", "augmix", "augmix_allop", "augmix_moco")


def _stub_family(image_size: int = 32, severity: float = 3.0) -> None:
    """Stands in for a family factory; only its signature matters to validation."""


@pytest.fixture
def families(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register stand-ins for the paper's families that are not (yet) registered, for this test only, so
    these tests exercise the DSL independently of urrlkit.augment."""
    for name in PAPER_FAMILIES:
        if name not in registry.FAMILIES:
            monkeypatch.setitem(registry.FAMILIES._items, name, _stub_family)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _recipe_id(p: Path) -> str:
    return str(p.relative_to(ROOT / "recipes"))


# ------------------------------------------------------------------------------------ shipped recipes


def test_recipes_are_shipped() -> None:
    names = {_recipe_id(p) for p in RECIPES}
    for must in ["urrl.toml", "paper/moco_v2.toml", "paper/urrl.toml", "paper/augmix.toml",
                 "paper/augmix_allop.toml", "paper/augmix_moco.toml", "paper/finetune/sim.toml",
                 "paper/finetune/l2sp.toml", "paper/finetune/none.toml", "paper/finetune/adversarial.toml",
                 "paper/eval/imagenet_c.toml", "paper/eval/cifar10_c.toml", "paper/eval/adversarial.toml",
                 "paper/eval/calibration.toml", "cpu/cifar10_moco_v2.toml", "cpu/cifar10_urrl.toml",
                 "cpu/tiny_imagenet_moco_v2.toml", "cpu/tiny_imagenet_urrl.toml"]:
        assert must in names


@pytest.mark.parametrize("path", RECIPES, ids=_recipe_id)
def test_shipped_recipe_validates(path: Path) -> None:
    """Against the real registries: fails (rather than passes on stand-ins) if a recipe names a family,
    backbone or data set urrlkit does not register."""
    missing = [f for f in PAPER_FAMILIES if f not in registry.FAMILIES]
    if missing:
        pytest.skip(f"augmentation families not registered yet: {', '.join(missing)}")
    result = CliRunner().invoke(app, ["recipe", "validate", str(path)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: ")


@pytest.mark.parametrize("path", RECIPES, ids=_recipe_id)
def test_shipped_recipe_show_round_trips(path: Path, families: None, tmp_path: Path) -> None:
    """`urrl recipe show` prints self-contained TOML: saved anywhere, it loads back to the same recipe."""
    result = CliRunner().invoke(app, ["recipe", "show", str(path)])
    assert result.exit_code == 0, result.stderr
    tomllib.loads(result.stdout)
    again = load(_write(tmp_path / "elsewhere" / "shown.toml", result.stdout))
    assert again.to_dict() == load(path).to_dict()
    assert again.digest() == load(path).digest()


def test_paper_recipes_follow_reference(families: None) -> None:
    """Paper §3.1 / facebookresearch/moco main_moco.py values in the base, and the variants change only the families."""
    base = load(ROOT / "recipes/paper/imagenet_base.toml")
    assert (base.optim.epochs, base.optim.lr_per_256, base.data.batch_size) == (200, 0.03, 256)
    assert base.optim.lr is None and base.optim.effective_lr(base.data.batch_size) == 0.03  # official MoCo v2
    assert base.pretext.bn_groups == "auto"
    assert (base.pretext.queue_size, base.pretext.momentum, base.pretext.temperature) == (65536, 0.999, 0.2)
    assert (base.pretext.head_hidden, base.pretext.head_dim, base.optim.schedule) == (2048, 128, "cosine")
    assert base.model.backbone == "resnet50" and not base.model.small_stem
    expected = {"moco_v2": [("moco_v2", 1.0)], "augmix": [("augmix", 1.0)],
                "augmix_allop": [("augmix_allop", 1.0)], "augmix_moco": [("augmix_moco", 1.0)],
                "urrl": [("augmix_allop", 0.5), ("moco_v2", 0.5)]}
    for name, fams in expected.items():
        r = load(ROOT / f"recipes/paper/{name}.toml")
        assert [(f.name, f.weight) for f in r.pretext.family_weights()] == fams
        assert r.optim == base.optim and r.model == base.model and r.data == base.data
    assert load(ROOT / "recipes/urrl.toml").pretext.p == 0.5


def test_finetune_recipes(families: None) -> None:
    sim = load(ROOT / "recipes/paper/finetune/sim.toml").finetune
    assert isinstance(sim.regularizer, SimReg) and "regularizer.weight" in sim.sweep and "lr" in sim.sweep
    l2sp = load(ROOT / "recipes/paper/finetune/l2sp.toml").finetune
    assert isinstance(l2sp.regularizer, L2SPReg)
    r = load(ROOT / "recipes/paper/finetune/none.toml")
    assert (r.data.image_size, r.data.load_size) == (224, 256)
    assert (r.model.backbone, r.model.small_stem) == ("resnet50", False)


def test_cpu_recipes(families: None) -> None:
    for name in ("cifar10", "tiny_imagenet"):
        moco = load(ROOT / f"recipes/cpu/{name}_moco_v2.toml")
        urrl = load(ROOT / f"recipes/cpu/{name}_urrl.toml")
        assert urrl.pretext.p == 0.5 and moco.pretext.p is None
        assert moco.pretext.queue_size % moco.data.batch_size == 0
        assert moco.model.small_stem and moco.optim.epochs <= 10
        assert str(moco.data.root).startswith("../shared/data/")


# ------------------------------------------------------------------------------------------- extends


def test_extends_overrides_and_inherits(tmp_path: Path, families: None) -> None:
    _write(tmp_path / "base.toml",
           "[optim]\nlr = 0.3\nepochs = 200\nmilestones = [60, 80]\n[run]\nname = 'b'\n")
    child = _write(tmp_path / "child.toml", 'extends = "base.toml"\n[optim]\nlr = 0.1\nmilestones = [5]\n')
    r = load(child)
    assert r.optim.lr == 0.1 and r.optim.epochs == 200  # tables merge key by key
    assert r.optim.milestones == [5]  # lists are replaced, not merged
    assert r.run.name == "b" and r.extends == "base.toml"


def test_extends_nested_and_relative(tmp_path: Path, families: None) -> None:
    _write(tmp_path / "a.toml", "[optim]\nlr = 1.0\nepochs = 7\nweight_decay = 0.5\n")
    _write(tmp_path / "sub" / "b.toml", 'extends = "../a.toml"\n[optim]\nepochs = 8\n')
    c = _write(tmp_path / "sub" / "deeper" / "c.toml",
               'extends = "../b.toml"\n[optim]\nweight_decay = 0.25\n')
    r = load(c)
    assert (r.optim.lr, r.optim.epochs, r.optim.weight_decay) == (1.0, 8, 0.25)


def test_extends_lists_of_tables_replaced(tmp_path: Path, families: None) -> None:
    _write(tmp_path / "a.toml",
           "[[pretext.families]]\nname = 'moco_v2'\n[[pretext.families]]\nname = 'augmix'\n")
    b = _write(tmp_path / "b.toml", "extends = 'a.toml'\n[[pretext.families]]\nname = 'augmix_moco'\n")
    assert [f.name for f in load(b).pretext.families] == ["augmix_moco"]


def test_extends_new_regularizer_type_replaces_table(tmp_path: Path, families: None) -> None:
    _write(tmp_path / "a.toml", "[finetune.regularizer]\ntype = 'sim'\nweight = 3.0\n")
    b = _write(tmp_path / "b.toml",
               "extends = 'a.toml'\n[finetune.regularizer]\ntype = 'l2sp'\nalpha = 0.1\n")
    reg = load(b).finetune.regularizer
    assert isinstance(reg, L2SPReg) and reg.alpha == 0.1
    c = _write(tmp_path / "c.toml", "extends = 'a.toml'\n[finetune.regularizer]\nnormalize = true\n")
    reg = load(c).finetune.regularizer
    assert isinstance(reg, SimReg) and reg.weight == 3.0 and reg.normalize


def test_circular_extends(tmp_path: Path) -> None:
    _write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    _write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(RecipeError, match=r"circular extends \(a.toml -> b.toml -> a.toml\)"):
        load(tmp_path / "a.toml")
    _write(tmp_path / "self.toml", 'extends = "self.toml"\n')
    with pytest.raises(RecipeError, match="circular extends"):
        load(tmp_path / "self.toml")


def test_deep_merge_does_not_mutate() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}}
    out = deep_merge(base, {"a": {"c": [3]}})
    assert out == {"a": {"b": 1, "c": [3]}} and base == {"a": {"b": 1, "c": [1, 2]}}


# --------------------------------------------------------------------------------------------- --set


@pytest.mark.parametrize(("item", "keys", "value"), [
    ("optim.lr=0.1", ["optim", "lr"], 0.1),
    ("optim.epochs=3", ["optim", "epochs"], 3),
    ("data.download=true", ["data", "download"], True),
    ("optim.milestones=[1, 2]", ["optim", "milestones"], [1, 2]),
    ("run.name=my-run", ["run", "name"], "my-run"),
    ('run.name="quoted"', ["run", "name"], "quoted"),
    ("data.root=../shared/data/cifar10", ["data", "root"], "../shared/data/cifar10"),
    ("finetune.sweep={lr = [0.1]}", ["finetune", "sweep"], {"lr": [0.1]}),
])
def test_parse_override(item: str, keys: list[str], value: object) -> None:
    assert parse_override(item) == (keys, value)


def test_set_overrides_file_and_extends(tmp_path: Path, families: None) -> None:
    _write(tmp_path / "a.toml", "[optim]\nlr = 0.3\nmilestones = [60, 80]\n")
    b = _write(tmp_path / "b.toml", "extends = 'a.toml'\n[optim]\nepochs = 9\n")
    r = load(b, ["optim.lr=0.05", "optim.milestones=[3]", "pretext.p=0.25", "optim.lr=0.07",
                 "eval.adversarial.steps=5"])
    assert r.optim.lr == 0.07  # the last --set wins
    assert r.optim.milestones == [3] and r.optim.epochs == 9
    assert r.pretext.p == 0.25 and r.eval.adversarial.steps == 5
    assert [f.name for f in r.pretext.family_weights()] == ["augmix_allop", "moco_v2"]


def test_set_new_regularizer_type_drops_old_keys(tmp_path: Path, families: None) -> None:
    a = _write(tmp_path / "a.toml", "[finetune.regularizer]\ntype = 'sim'\nweight = 3.0\n")
    reg = load(a, ["finetune.regularizer.type=l2sp", "finetune.regularizer.beta=0.5"]).finetune.regularizer
    assert isinstance(reg, L2SPReg) and reg.beta == 0.5
    assert load(a, ["finetune.regularizer.type=sim"]).finetune.regularizer.weight == 3.0


def test_set_through_cli(tmp_path: Path, families: None) -> None:
    a = _write(tmp_path / "a.toml", "[optim]\nlr = 0.3\n")
    result = CliRunner().invoke(app, ["recipe", "show", str(a), "--set", "optim.lr=0.5", "-s", "run.name=x"])
    assert result.exit_code == 0, result.stderr
    shown = tomllib.loads(result.stdout)
    assert shown["optim"]["lr"] == 0.5 and shown["run"]["name"] == "x"


def test_defaults_round_trip(tmp_path: Path, families: None) -> None:
    r = Recipe()
    assert load(_write(tmp_path / "d.toml", r.to_toml())).to_dict() == r.to_dict()
    assert [f.name for f in r.pretext.families] == ["moco_v2"]
