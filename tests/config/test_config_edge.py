"""Recipes at the edge (issue #16): building blocks take plain values; each stage's entry unpacks the recipe.

The pretext modules, the data loaders and the fine-tuning regularizers are built here without any recipe, and the
stage entries (pretext/train.py build_pretext, urrlkit.data.from_config, the regularizers' builder_args) are
checked to hand them exactly the recipe's values.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from urrlkit import registry
from urrlkit.config import CustomReg, DataConfig, L2SPReg, NoReg, SimReg, load, validate_dict
from urrlkit.data import from_config, load_split
from urrlkit.finetune.regularizers import build_objective, regularized_parameters
from urrlkit.models import Classifier, build_encoder
from urrlkit.pretext.instdis import InstDis
from urrlkit.pretext.moco import MoCo
from urrlkit.pretext.pirl import PIRL
from urrlkit.pretext.train import accepted_kwargs, build_pretext, pretext_kwargs

TINY = {"model": {"backbone": "resnet10", "width": 4}, "data": {"batch_size": 16}, "run": {"seed": 3}}


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _encoder() -> torch.nn.Module:
    return build_encoder("resnet10", small_stem=True, width=4)


@pytest.mark.parametrize(("path", "cls"), [("paper/moco_v2.toml", MoCo), ("paper/appendix_b/instdis.toml", InstDis),
                                           ("paper/appendix_b/pirl.toml", PIRL)])
def test_module_defaults_are_the_paper_recipes_values(path: str, cls: type) -> None:
    """A module built without a recipe gets the reference values: every value the paper recipe hands it equals
    the module's default, except the two whose default is the recipe-free meaning of the same thing."""
    given = accepted_kwargs(cls, pretext_kwargs(load(f"recipes/{path}").pretext))
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    differ = {k: (v, defaults[k]) for k, v in given.items() if v != defaults[k]}
    # head_hidden = 2048 is ResNet-50's feature size, which hidden_dim = None means; "auto" needs the launch.
    assert differ == {"hidden_dim": (2048, None), "bn_groups": ("auto", 1)}


@pytest.mark.parametrize(("method", "extra", "plain"), [
    ("moco_v2", {"bn_groups": 2, "head_hidden": 12},
     {"dim": 8, "hidden_dim": 12, "queue_size": 32, "bn_groups": 2, "seed": 3}),
    ("instdis", {"negatives": 5, "mlp": False, "temperature": 0.1},
     {"num_samples": 40, "dim": 8, "negatives": 5, "temperature": 0.1, "momentum": 0.999, "mlp": False}),
    ("pirl", {"jigsaw_grid": 2, "mlp": True},
     {"num_samples": 40, "dim": 8, "jigsaw_grid": 2, "mlp": True, "negatives": 32, "momentum": 0.999,
      "temperature": 0.2}),
])
def test_build_pretext_equals_the_module_built_from_plain_values(method: str, extra: dict, plain: dict) -> None:
    recipe = validate_dict({**TINY, "pretext": {"method": method, "queue_size": 32, "head_dim": 8, **extra}})
    torch.manual_seed(0)
    from_recipe = build_pretext(recipe, 40)
    torch.manual_seed(0)
    cls = {"moco_v2": MoCo, "instdis": InstDis, "pirl": PIRL}[method]
    by_hand = cls(build_encoder("resnet10", small_stem=True, width=4), **plain)
    a, b = _state(from_recipe), _state(by_hand)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (from_recipe.k, from_recipe.t, from_recipe.groups) == (by_hand.k, by_hand.t, by_hand.groups)


def test_negatives_default_to_the_queue_size() -> None:
    p = validate_dict({"pretext": {"method": "instdis", "queue_size": 4096}}).pretext
    assert pretext_kwargs(p)["negatives"] == 4096
    assert pretext_kwargs(p.model_copy(update={"negatives": 7}))["negatives"] == 7


def test_a_registered_pretext_receives_the_values_its_signature_names(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, dict] = {}

    def narrow(encoder: torch.nn.Module, *, temperature: float, num_samples: int) -> torch.nn.Module:
        seen["narrow"] = {"temperature": temperature, "num_samples": num_samples}
        return encoder

    def wide(encoder: torch.nn.Module, **values: object) -> torch.nn.Module:
        seen["wide"] = values
        return encoder

    monkeypatch.setitem(registry.PRETEXTS._items, "narrow_test", narrow)
    monkeypatch.setitem(registry.PRETEXTS._items, "wide_test", wide)
    pretext = {"temperature": 0.3, "queue_size": 32, "head_dim": 8}
    build_pretext(validate_dict({**TINY, "pretext": {"method": "narrow_test", **pretext}}), 40)
    assert seen["narrow"] == {"temperature": 0.3, "num_samples": 40}
    build_pretext(validate_dict({**TINY, "pretext": {"method": "wide_test", **pretext}}), 40)
    assert seen["wide"] == {"dim": 8, "hidden_dim": None, "mlp": True, "queue_size": 32, "momentum": 0.999,
                            "temperature": 0.3, "bn_groups": 1, "negatives": 32, "bank_loss": "nce",
                            "jigsaw_grid": 3, "pirl_lambda": 0.5, "num_samples": 40, "seed": 3, "processes": 1}


def test_modules_work_without_a_recipe() -> None:
    torch.manual_seed(0)
    x = [torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    moco = MoCo(_encoder(), queue_size=8)
    assert moco.queue.shape == (128, 8) and isinstance(moco.head_q[0], torch.nn.Linear)
    bank = InstDis(_encoder(), num_samples=10, negatives=3)
    assert isinstance(bank.head, torch.nn.Linear) and bank.memory.bank.shape == (10, 128)
    for model in (moco, bank, PIRL(_encoder(), num_samples=10, negatives=3, jigsaw_grid=0)):
        loss, _ = model(x, torch.arange(4))
        assert torch.isfinite(loss)


def test_from_config_unpacks_the_data_section() -> None:
    cfg = DataConfig(dataset="cifar10-sample", image_size=24, load_size=28, train_limit=30, test_limit=10)
    for split, limit in (("train", 30), ("test", 10)):
        plain = load_split("cifar10-sample", split, 28, limit=limit)
        via = from_config(cfg, split)
        assert len(via) == len(plain) == limit
        assert all(torch.equal(via[i][0], plain[i][0]) and via[i][1] == plain[i][1] for i in range(limit))
    assert from_config(cfg, "test", size=16)[0][0].shape == (3, 16, 16)


def test_regularizer_sections_give_a_name_and_plain_values() -> None:
    assert NoReg().builder_args() == ("none", {})
    assert SimReg(weight=0.5).builder_args() == ("sim", {"weight": 0.5, "norm": "fro", "normalize": False})
    assert L2SPReg(params="all").builder_args() == ("l2sp", {"alpha": 0.01, "beta": 0.01, "params": "all"})
    assert CustomReg(name="distill", params={"weight": 2}).builder_args() == ("distill", {"weight": 2})


def test_a_registered_regularizer_gets_its_params_as_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = Classifier(_encoder(), 3)

    def build_scaled(model: Classifier, pretrained: torch.nn.Module, *, scale: float) -> object:
        return lambda x, y: (scale * model(x).sum(), model(x), {})

    monkeypatch.setitem(registry.REGULARIZERS._items, "scaled_test", build_scaled)
    name, values = CustomReg(name="scaled_test", params={"scale": 2.0}).builder_args()
    x = torch.rand(2, 3, 16, 16)
    loss, logits, _ = build_objective(name, model, model.encoder, **values)(x, torch.tensor([0, 1]))
    assert torch.equal(loss, 2.0 * logits.sum())
    assert regularized_parameters(name, model, **values) == []
    name, values = L2SPReg().builder_args()
    assert {id(p) for p in regularized_parameters(name, model, **values)} == {
        id(p) for p in model.parameters() if p.ndim > 1}  # L2-SP's weights claimed from weight decay


def test_urrlkit_recipe_is_an_alias_of_urrlkit_config() -> None:
    """User code written against the old module keeps working: the same objects under the same names."""
    import urrlkit.config
    import urrlkit.recipe

    assert urrlkit.recipe.__all__ == urrlkit.config.__all__
    assert all(getattr(urrlkit.recipe, n) is getattr(urrlkit.config, n) for n in urrlkit.config.__all__)
    assert urrlkit.recipe.load("recipes/urrl.toml") == urrlkit.config.load("recipes/urrl.toml")
