"""Built-in registry entries are entry points of urrlkit's pyproject.toml (urrlkit/registry.py): each loads to what
the concrete modules register, the families' torch-free checks (urrlkit/catalog/families.py) have the factories'
signatures and reject what the factories reject, and validating a recipe imports neither torch nor torchvision."""

from __future__ import annotations

import inspect
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from urrlkit import registry
from urrlkit.catalog import families as checks
from urrlkit.errors import UrrlError
from urrlkit.registry import Registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def live() -> None:
    """Every concrete module imported, so the registries hold what the modules themselves register."""
    import urrlkit.augment
    import urrlkit.data
    import urrlkit.evaluate.corruptions
    import urrlkit.finetune
    import urrlkit.models
    import urrlkit.pretext  # noqa: F401

    registry.resolve_all()


def test_recipe_validation_imports_no_torch() -> None:
    probe = (
        "import sys, runpy\n"
        "import urrlkit.config as r\n"
        "r.load('recipes/urrl.toml')\n"
        "r.load('recipes/paper/urrl.toml', ['pretext.p=0.3'])\n"
        "sys.argv = ['urrl', 'recipe', 'validate', 'recipes/cpu/cifar10_urrl.toml']\n"
        "try:\n    runpy.run_module('urrlkit.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("reg", registry.ALL, ids=lambda r: r.kind)
def test_every_live_entry_is_an_entry_point(live: None, reg: Registry) -> None:
    """What urrlkit's modules register is exactly what its entry points name, and each entry point loads to the
    registered object (families: a declaration that describes it)."""
    ours = {n for n, ep in reg.entry_points().items() if ep.value.startswith("urrlkit.")}
    assert ours, f"{reg.kind}: no entry points (is urrlkit installed? pip install -e .)"
    assert set(reg._items) == ours, (sorted(set(reg._items) - ours), sorted(ours - set(reg._items)))
    for name, obj in reg._items.items():
        decl = reg.declaration(name)
        assert decl is None or decl.describes(obj), f"{reg.kind} {name!r}: declared {decl}, registered {obj!r}"


@pytest.mark.parametrize("name", sorted(registry.FAMILIES.entry_points()))
def test_family_check_has_the_factory_signature(live: None, name: str) -> None:
    factory, check = registry.FAMILIES.get(name), registry.FAMILIES.check_target(name)
    assert check is not factory and check.__module__ == "urrlkit.catalog.families"
    live_params = list(inspect.signature(factory).parameters.values())
    assert list(inspect.signature(check).parameters.values()) == live_params


# (family, params at image_size 32) that the factory rejects; the check must reject them with the same message.
BAD = [
    ("moco_v2", {"scale_min": 0.0}), ("moco_v2", {"scale_min": 0.9, "scale_max": 0.5}), ("moco_v2", {"hue": 0.6}),
    ("moco_v2", {"brightness": -1.0}), ("moco_v2", {"jitter_p": 1.5}), ("moco_v2", {"blur_sigma_min": 0.0}),
    ("moco_v2", {"blur_sigma_min": 3.0}), ("augmix", {"severity": 11.0}), ("augmix", {"severity": 0.01}),
    ("augmix_allop", {"width": 0}), ("augmix_moco", {"crop": "centre"}), ("augmix", {"scale_min": 1.5}),
    ("instdis", {"hue": 0.7}), ("instdis", {"grayscale_p": -0.1}), ("instdis", {"scale_max": 2.0}),
]
GOOD = [("moco_v2", {}), ("moco_v2", {"hue": 0.5, "flip": False}), ("augmix", {"severity": 10, "depth": 2}),
        ("augmix_moco", {"all_ops": False, "crop": "rrc"}), ("instdis", {"grayscale_first": False}),
        ("identity", {})]


@pytest.mark.parametrize(("name", "params"), BAD, ids=lambda v: str(v))
def test_check_rejects_what_the_factory_rejects(live: None, name: str, params: dict) -> None:
    with pytest.raises(ValueError) as built:
        registry.FAMILIES.get(name)(32, **params)
    with pytest.raises(ValueError) as checked:
        registry.FAMILIES.check_target(name)(32, **params)
    assert str(checked.value) == str(built.value)


@pytest.mark.parametrize(("name", "params"), GOOD, ids=lambda v: str(v))
def test_check_accepts_what_the_factory_builds(live: None, name: str, params: dict) -> None:
    registry.FAMILIES.get(name)(32, **params)
    assert registry.FAMILIES.check_target(name)(32, **params) is None


POOL: dict[str, list] = {"float": [-1.0, 0.0, 0.05, 0.3, 0.5, 0.9, 1.0, 1.5, 2.5, 11.0],
                         "int": [-1, 0, 1, 3], "bool": [False, True], "str": ["auto", "pad", "rrc", "none", "centre"]}


@pytest.mark.parametrize("name", sorted(registry.FAMILIES.entry_points()))
def test_check_and_factory_agree_on_every_parameter(live: None, name: str) -> None:
    """Each parameter alone over a pool of values of its type, at a CIFAR and an ImageNet size: the check
    raises exactly when the factory does, with the same message."""
    factory, check = registry.FAMILIES.get(name), registry.FAMILIES.check_target(name)
    for param in list(inspect.signature(factory).parameters.values())[1:]:
        kinds = [k for k in POOL if k in str(param.annotation)]
        for size, value in itertools.product((32, 224), [v for k in kinds for v in POOL[k]]):
            outcomes = []
            for fn in (factory, check):
                try:
                    fn(size, **{param.name: value})
                    outcomes.append("ok")
                except ValueError as exc:
                    outcomes.append(str(exc))
            assert outcomes[0] == outcomes[1], (name, param.name, value, size)


def test_default_severity_is_the_reference_one() -> None:
    assert (checks.default_severity(32), checks.default_severity(64), checks.default_severity(224)) == (3, 3, 1)


# ------------------------------------------------------------------------------- declared registry entries


def _double(x: int) -> int:
    return 2 * x


def test_declared_entry_is_known_before_and_imported_on_get() -> None:
    reg: Registry = Registry("thing")
    reg.declare("double", f"{__name__}:_double", check=abs)
    assert "double" in reg and reg.names() == ["double"] and len(reg) == 1 and not reg._items
    assert reg.check_target("double") is abs
    assert reg.get("double") is _double and reg.check_target("double") is abs
    with pytest.raises(UrrlError, match="unknown thing 'doubel' \\(did you mean 'double'\\?\\); allowed: double"):
        reg.get("doubel")


def test_the_declared_object_registers_without_clash_and_others_need_overwrite() -> None:
    reg: Registry = Registry("thing")
    reg.declare("double", f"{__name__}:_double", check=abs)
    reg.add("double", _double)  # the module registering its own declared entry
    with pytest.raises(ValueError, match="already registered"):
        reg.add("double", _double)
    reg2: Registry = Registry("thing")
    reg2.declare("double", f"{__name__}:_double", check=abs)
    with pytest.raises(ValueError, match="already registered"):
        reg2.add("double", print)
    reg2.add("double", print, overwrite=True)  # a user's replacement: its own signature is checked, not abs
    assert reg2.get("double") is print and reg2.check_target("double") is print


def test_a_user_entry_is_checked_by_calling_it() -> None:
    reg: Registry = Registry("thing")
    reg.add("double", _double)
    assert reg.check_target("double") is _double


def test_a_declared_module_that_does_not_register_is_a_clear_error() -> None:
    reg: Registry = Registry("thing")
    reg.declare("ghost", "urrlkit.errors")
    with pytest.raises(UrrlError, match=r"thing 'ghost': urrlkit\.errors was imported but did not register it"):
        reg.get("ghost")


@pytest.mark.parametrize(("reg", "base"), [(registry.PRETEXTS, "urrlkit.config.pretext:MethodSettings"),
                                           (registry.BACKBONES, "urrlkit.config.model:BackboneSettings")],
                         ids=["pretexts", "backbones"])
def test_built_in_plugins_are_entry_points_of_torch_free_settings(reg: Registry, base: str) -> None:
    """Methods and backbones are found as a third-party package's are: entry points of urrlkit's own
    distribution, each a settings class of the right base whose tag accepts the entry's name."""
    import importlib

    module, _, cls_name = base.partition(":")
    base_cls = getattr(importlib.import_module(module), cls_name)
    ours = {n: ep for n, ep in reg.entry_points().items() if ep.value.startswith("urrlkit.")}
    assert {"moco_v2", "instdis", "pirl"} <= set(ours) or {"resnet18", "resnet50"} <= set(ours)
    for name in ours:
        cls = reg.get(name)
        assert isinstance(cls, type) and issubclass(cls, base_cls), name
        tag = "method" if base_cls.__name__ == "MethodSettings" else "backbone"
        value = f"{name}:x" if getattr(cls, "prefixed", False) else name
        assert getattr(cls.model_validate({tag: value}), tag) == value


def test_a_registered_pretext_can_be_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    from typing import Literal

    from urrlkit.config import validate_dict
    from urrlkit.config.pretext import MethodSettings
    from urrlkit.errors import RecipeError

    class ByolTest(MethodSettings):
        method: Literal["byol_test"] = "byol_test"

    recipe = {"pretext": {"method": "byol_test"}}
    with pytest.raises(RecipeError, match=r"pretext.method = 'byol_test' is not allowed.*; allowed: .*moco_v2"):
        validate_dict(recipe)
    monkeypatch.setitem(registry.PRETEXTS._items, "byol_test", ByolTest)
    assert validate_dict(recipe).pretext.method == "byol_test"
    with pytest.raises(RecipeError, match=r"allowed: .*moco_v2.*, byol_test$"):
        validate_dict({"pretext": {"method": "nope"}})
