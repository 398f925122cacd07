"""BYOL as a method plugin (urrlkit/pretext/methods/byol.py): online and target networks, the symmetric loss of
the building blocks, gradients to the online network only, the cosine τ schedule from the loop's progress applied
after the optimizer step, the asymmetric views as view groups, recipe errors, pretraining on the bundled sample."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from urrlkit.config import validate_dict
from urrlkit.engine.progress import Progress
from urrlkit.errors import RecipeError
from urrlkit.models import build_encoder
from urrlkit.pretext.losses import byol_loss
from urrlkit.pretext.methods.byol import BYOL
from urrlkit.pretext.model import BuildContext, PretextModel, build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "helpers"))
import sample_pretrain

B, SIZE = 6, 16
ONLINE = ("encoder", "parts.projector", "parts.predictor")
TARGET = ("parts.target_encoder", "parts.target_projector")


def _model(**kw: object) -> PretextModel:
    torch.manual_seed(0)
    settings = BYOL(**{"proj_hidden": 32, "proj_dim": 8, "pred_hidden": 16, **kw})  # type: ignore[arg-type]
    return build_model(settings, build_encoder("resnet10", small_stem=True, width=4), BuildContext(num_samples=0))


def _views(seed: int = 3) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(B, 3, SIZE, SIZE, generator=g), torch.rand(B, 3, SIZE, SIZE, generator=g)]


def _online_target(m: PretextModel) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    p = m.parts
    return ([*m.encoder.parameters(), *p["projector"].parameters()],
            [*p["target_encoder"].parameters(), *p["target_projector"].parameters()])


def test_networks_and_the_initial_target() -> None:
    m = _model()
    proj, pred = m.parts["projector"], m.parts["predictor"]
    assert [type(x).__name__ for x in proj] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert proj[0].bias is not None and proj[-1].bias is None  # networks.MLP: with_bias True, then False
    assert (proj[0].in_features, proj[0].out_features, proj[-1].out_features) == (m.encoder.feature_dim, 32, 8)
    assert (pred[0].in_features, pred[0].out_features, pred[-1].out_features) == (8, 16, 8)
    online, target = _online_target(m)
    assert len(online) == len(target) and all(torch.equal(a, b) for a, b in zip(online, target, strict=True))
    assert all(not t.requires_grad for t in target)
    assert "target_predictor" not in m.parts  # the target has no predictor
    defaults = BYOL()
    assert (defaults.proj_hidden, defaults.proj_dim, defaults.pred_hidden, defaults.base_momentum) == (
        4096, 256, 4096, 0.996)


def test_forward_is_the_symmetric_loss_of_the_building_blocks() -> None:
    m = _model()
    views = _views()
    out = m(views, torch.arange(B), Progress(3, 10, 0, 1))
    p = m.parts
    with torch.no_grad():
        feats = [m.encoder(v) for v in views]  # each view on its own: BN statistics per view
        z = [p["projector"](f) for f in feats]
        q = [p["predictor"](zi) for zi in z]
        t = [p["target_projector"](p["target_encoder"](v)) for v in views]
    assert torch.allclose(out.loss, byol_loss(q[0], t[1]) + byol_loss(q[1], t[0]), atol=1e-6)
    assert out.features is not None and torch.allclose(out.features, feats[0], atol=1e-6)
    assert out.embeddings is not None and torch.allclose(out.embeddings[1], z[1], atol=1e-6)
    assert out.stats["tau"] == pytest.approx(1 - 0.004 * (math.cos(math.pi * 0.3) + 1) / 2)
    assert 0 <= float(out.loss.detach()) <= 8  # each term in [0, 4]
    assert BYOL().chance_loss(256) is None  # a regression loss: no chance level


def test_gradients_reach_the_online_network_only() -> None:
    m = _model()
    m(_views(), torch.arange(B)).loss.backward()
    for name, param in m.named_parameters():
        if name.startswith(TARGET):
            assert param.grad is None and not param.requires_grad, name
        else:
            assert name.startswith(ONLINE) and param.grad is not None and param.grad.abs().sum() > 0, name
    assert any(n.startswith("parts.predictor") for n, _ in m.named_parameters())


@pytest.mark.parametrize(("step", "steps", "tau"), [(0, 100, 0.996), (50, 100, 0.998), (25, 100, None),
                                                      (99, 100, None), (100, 100, 1.0)])
def test_tau_follows_the_cosine_schedule_of_the_progress(step: int, steps: int, tau: float | None) -> None:
    expected = 1 - (1 - 0.996) * (math.cos(math.pi * step / steps) + 1) / 2  # schedules.py target_ema
    assert BYOL().target_decay(Progress(step, steps, 0, 1)) == pytest.approx(expected, abs=1e-12)
    if tau is not None:
        assert expected == pytest.approx(tau, abs=1e-12)


def test_after_step_moves_the_target_by_the_ema_of_that_step() -> None:
    """After an optimizer step the target is τ·target + (1 − τ)·online with the τ of the step that ran; the BN
    running statistics of the target are its own (parameters only)."""
    m = _model(base_momentum=0.9)
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    steps = 4
    for k in range(steps):
        progress = Progress(k, steps, 0, 1, k, steps)
        m(_views(k), torch.arange(B), progress).loss.backward()
        opt.step()
        opt.zero_grad()
        online, target = _online_target(m)
        before = [t.detach().clone() for t in target]
        stats = {n: b.clone() for n, b in m.parts["target_encoder"].named_buffers()}
        m.after_step(progress)
        tau = 1 - 0.1 * (math.cos(math.pi * k / steps) + 1) / 2
        for b, o, t in zip(before, online, target, strict=True):
            assert torch.allclose(t, tau * b + (1 - tau) * o.detach(), atol=1e-7)
        assert all(torch.equal(stats[n], b) for n, b in m.parts["target_encoder"].named_buffers())
    online, target = _online_target(m)
    assert not all(torch.equal(a, b) for a, b in zip(online, target, strict=True))


def test_the_target_forward_updates_its_own_bn_statistics() -> None:
    m = _model()
    bn = next(x for x in m.parts["target_encoder"].modules() if isinstance(x, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    m(_views(), torch.arange(B))
    assert not torch.equal(before, bn.running_mean)  # training mode, batch statistics, as is_training=True


# ----------------------------------------------------------------------------------------- the recipe


def test_view_groups_carry_byols_asymmetric_blur_and_solarization() -> None:
    r = validate_dict({"pretext": {"method": "byol", "p": 0.5}})
    assert [(f.name, f.weight) for f in r.pretext.family_weights()] == [("augmix_allop", 0.5), ("byol", 0.5)]
    g1, g2 = r.pretext.view_groups()
    assert (g1.count, g2.count) == (1, 1)
    assert dict(g1.params) == {"byol": {"blur_p": 1.0, "solarize_p": 0.0}}
    assert dict(g2.params) == {"byol": {"blur_p": 0.1, "solarize_p": 0.2}}
    own = validate_dict({"pretext": {"method": "byol", "view_blur_p": [0.5, 0.5]}}).pretext
    assert own.view_groups()[1].params["byol"]["blur_p"] == 0.5
    # A family list without byol: nothing to set (the sampler would refuse parameters of a family it lacks).
    other = validate_dict({"pretext": {"method": "byol", "families": [{"name": "moco_v2"}]}}).pretext
    assert all(not g.params for g in other.view_groups())


def test_view_groups_build_the_sampler() -> None:
    from urrlkit.augment.families import MocoV2
    from urrlkit.augment.multiview import build_view_sampler

    s = validate_dict({"pretext": {"method": "byol", "p": 0.5}}).pretext
    sampler = build_view_sampler(s.family_weights(), 16, s.view_groups())
    fams = [grp.families[1] for grp in sampler.samplers]
    assert all(isinstance(f, MocoV2) for f in fams)
    assert [(f.blur_p, f.solarize_p) for f in fams] == [(1.0, 0.0), (0.1, 0.2)]  # type: ignore[attr-defined]


def test_pretraining_draws_the_sample_recipes_views_from_the_view_groups() -> None:
    from urrlkit.config import load
    from urrlkit.pretext.workflow import recipe_sampler

    sampler = recipe_sampler(load(sample_pretrain.sample_recipe("byol")))
    assert sampler.names == ["augmix_allop", "byol"] and sampler.counts == [1, 1]
    fams = [grp.families[1] for grp in sampler.samplers]
    assert [(f.blur_p, f.solarize_p) for f in fams] == [(1.0, 0.0), (0.1, 0.2)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("pretext", "pattern"), [
    ({"views": 3}, r"pretext\.views.*BYOL takes exactly 2 views"),
    ({"view_blur_p": [1.5, 0.1]}, r"pretext\.view_blur_p.*\[0, 1\]"),
    ({"view_solarize_p": [0.0]}, r"pretext\.view_solarize_p"),
    ({"base_momentum": 1.5}, r"pretext\.base_momentum"),
    ({"proj_dim": 0}, r"pretext\.proj_dim"),
    ({"temperature": 0.1}, r"unknown key pretext\.temperature for method 'byol'"),
])
def test_bad_fields_are_one_line_errors(pretext: dict, pattern: str) -> None:
    with pytest.raises(RecipeError, match=pattern) as err:
        validate_dict({"pretext": {"method": "byol", **pretext}})
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------- pretraining the sample

def test_cli_pretraining_on_the_sample_beats_the_untrained_encoder(tmp_path: Path) -> None:
    rows = sample_pretrain.learning_rows("byol", tmp_path)
    knn = [r["knn_top1"] for r in rows if "knn_top1" in r]
    assert knn, "the sample recipe's kNN monitor logged nothing"
    assert rows[-1]["stage"] == "pretrain-done" and set(rows[-1]["family_fraction"]) == {"augmix_allop", "byol"}
    before = sample_pretrain.untrained_knn("byol")
    assert knn[-1] > before + 2, (knn, before)


def test_stop_and_resume_is_bit_identical(tmp_path: Path) -> None:
    sample_pretrain.stop_and_resume_equal_a_full_run("byol", tmp_path)
