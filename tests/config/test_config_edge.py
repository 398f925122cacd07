"""Recipes at the edge (issue #16): building blocks take plain values; each stage's entry unpacks the recipe.

A method's settings are its own recipe fields (issue #22); the methods, the data loaders and the fine-tuning
regularizers are built here without any recipe, and the
stage entries (pretext/workflow.py build_pretext, urrlkit.data.from_config, the regularizers' builder_args) are
checked to hand them exactly the recipe's values.
"""

from __future__ import annotations

from typing import Literal

import pytest
import torch

from urrlkit import registry
from urrlkit.config import CustomReg, DataConfig, L2SPReg, NoReg, SimReg, load, validate_dict
from urrlkit.config.pretext import MethodSettings
from urrlkit.data import from_config, load_split
from urrlkit.engine.progress import StepOutput
from urrlkit.errors import RecipeError
from urrlkit.finetune.regularizers import build_objective, regularized_parameters
from urrlkit.models import Classifier, build_encoder
from urrlkit.pretext.blocks import Queue
from urrlkit.pretext.common import MemoryBank
from urrlkit.pretext.methods.instdis import InstDis
from urrlkit.pretext.methods.moco_v2 import MoCoV2
from urrlkit.pretext.methods.pirl import PIRL
from urrlkit.pretext.model import BuildContext, PretextModel, build_model
from urrlkit.pretext.workflow import build_pretext

TINY = {"model": {"backbone": "resnet10", "width": 4}, "data": {"batch_size": 16}, "run": {"seed": 3}}


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _encoder() -> torch.nn.Module:
    return build_encoder("resnet10", small_stem=True, width=4)


@pytest.mark.parametrize(("path", "cls"), [("paper/moco_v2.toml", MoCoV2),
                                           ("paper/appendix_b/instdis.toml", InstDis),
                                           ("paper/appendix_b/pirl.toml", PIRL)])
def test_method_defaults_are_the_paper_recipes_values(path: str, cls: type) -> None:
    """A method built without a recipe gets the reference values: every value of the paper recipe equals the
    settings' default, except the two whose default is the recipe-free meaning of the same thing."""
    p = load(f"recipes/{path}").pretext
    assert type(p) is cls
    own = {k for k in cls.model_fields if k not in MethodSettings.model_fields}
    differ = {k: (getattr(p, k), cls.model_fields[k].default) for k in own
              if getattr(p, k) != cls.model_fields[k].default}
    # head_hidden = 2048 is ResNet-50's feature size, which None means; "auto" needs the launch.
    assert differ == {"head_hidden": (2048, None), "bn_groups": ("auto", 1)}


@pytest.mark.parametrize(("method", "extra"), [
    ("moco_v2", {"bn_groups": 2, "head_hidden": 12, "queue_size": 32}),
    ("instdis", {"negatives": 5, "mlp": False, "temperature": 0.1}),
    ("pirl", {"jigsaw_grid": 2, "mlp": True, "negatives": 32}),
])
def test_build_pretext_equals_the_model_built_from_the_settings(method: str, extra: dict) -> None:
    recipe = validate_dict({**TINY, "pretext": {"method": method, "head_dim": 8, **extra}})
    torch.manual_seed(0)
    from_recipe = build_pretext(recipe, 40)
    torch.manual_seed(0)
    cls = {"moco_v2": MoCoV2, "instdis": InstDis, "pirl": PIRL}[method]
    by_hand = build_model(cls(head_dim=8, **extra), _encoder(), BuildContext(num_samples=40, seed=3))
    a, b = _state(from_recipe), _state(by_hand)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert from_recipe.method == by_hand.method


def test_a_methods_fields_are_its_own() -> None:
    with pytest.raises(RecipeError, match=r"unknown key pretext.queue_size for method 'instdis'; allowed here: "
                                          r"method, views, p, families, bn_groups, head_dim"):
        validate_dict({"pretext": {"method": "instdis", "queue_size": 4096}})
    with pytest.raises(RecipeError, match=r"unknown key pretext.jigsaw_gird for method 'pirl' \(did you mean "
                                          r"'jigsaw_grid'\?\)"):
        validate_dict({"pretext": {"method": "pirl", "jigsaw_gird": 2}})
    assert validate_dict({"pretext": {"method": "instdis"}}).pretext.negatives == 4096  # lemniscate's --nce-k


class Narrow(MethodSettings):
    """A user's method registered in Python (not an entry point): its own fields, nothing else."""

    method: Literal["narrow_test"] = "narrow_test"
    temperature: float = 0.5

    def build(self, encoder: torch.nn.Module, ctx: BuildContext) -> dict[str, torch.nn.Module]:
        return {"head": torch.nn.Linear(encoder.feature_dim, 4)}  # type: ignore[arg-type]

    def forward(self, model: PretextModel, views: list[torch.Tensor], index: torch.Tensor,
                progress: object) -> StepOutput:
        feats = model.encoder(views[0])
        return StepOutput(model.parts["head"](feats).pow(2).mean() / self.temperature, features=feats)


def test_a_registered_method_receives_its_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.PRETEXTS._items, "narrow_test", Narrow)
    recipe = validate_dict({**TINY, "pretext": {"method": "narrow_test", "temperature": 0.25}})
    assert isinstance(recipe.pretext, Narrow) and recipe.pretext.temperature == 0.25
    model = build_pretext(recipe, 40)
    out = model([torch.rand(2, 3, 16, 16)] * 2, torch.arange(2))
    assert torch.isfinite(out.loss) and out.features is not None
    with pytest.raises(RecipeError, match=r"unknown key pretext.queue_size for method 'narrow_test'"):
        validate_dict({**TINY, "pretext": {"method": "narrow_test", "queue_size": 32}})


def test_methods_work_without_a_recipe() -> None:
    torch.manual_seed(0)
    x = [torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    moco = build_model(MoCoV2(queue_size=8), _encoder(), BuildContext(num_samples=10))
    assert moco.part("queue", Queue).queue.shape == (128, 8) and isinstance(moco.parts["head_q"][0], torch.nn.Linear)
    bank = build_model(InstDis(negatives=3), _encoder(), BuildContext(num_samples=10))
    assert isinstance(bank.parts["head"], torch.nn.Linear) and bank.part("memory", MemoryBank).bank.shape == (10, 128)
    pirl = build_model(PIRL(negatives=3, jigsaw_grid=0), _encoder(), BuildContext(num_samples=10))
    for model in (moco, bank, pirl):
        assert torch.isfinite(model(x, torch.arange(4)).loss)


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
    assert SimReg(weight=0.5).builder_args() == ("sim", {"weight": 0.5, "norm": "fro", "normalize": False,
                                                         "frozen_bn": "eval", "scale": "batch"})
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
