"""DINO (urrlkit/pretext/methods/dino.py) against facebookresearch/dino: the loss of a step equals the building
blocks' direct computation (teacher on the global crops only, the centre before its update), the centre update,
teacher temperature and momentum from Progress, the teacher as the EMA after after_step, the last layer held
fixed during freeze_last_layer epochs (its gradients dropped right before the optimizer step), the multi-crop
view groups, validation errors."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from urrlkit.augment.multiview import GroupCrop, build_view_sampler
from urrlkit.config import validate_dict
from urrlkit.engine.optim import build_optimizer
from urrlkit.engine.progress import Progress
from urrlkit.errors import RecipeError
from urrlkit.models import Encoder, build_encoder
from urrlkit.pretext.freeze import StepFreeze
from urrlkit.pretext.heads import DINOHead
from urrlkit.pretext.losses import dino_center, dino_loss
from urrlkit.pretext.methods.dino import DINO, multi_crop_features, same_size_runs
from urrlkit.pretext.model import BuildContext, PretextModel, build_model
from urrlkit.pretext.schedules import dino_momentum, dino_teacher_temp

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "helpers"))
import ddp_ssl_step
import sample_pretrain

BYOL = [{"name": "byol"}]
SETTINGS = {"families": BYOL, "out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8, "local_crops": 2,
            "local_size": 8}


def _model(encoder: Encoder | None = None, **kw: object) -> PretextModel:
    torch.manual_seed(0)
    enc = encoder if encoder is not None else build_encoder("resnet10", small_stem=True, width=4)
    return build_model(DINO(**{**SETTINGS, **kw}), enc, BuildContext(num_samples=0, epochs=4, steps_per_epoch=5))


def _views(b: int = 6) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(b, 3, 16, 16, generator=g) for _ in range(2)] + [torch.rand(b, 3, 8, 8, generator=g)
                                                                        for _ in range(2)]


def progress(epoch: int, step_in_epoch: int = 0, epochs: int = 4, per_epoch: int = 5) -> Progress:
    return Progress(epoch * per_epoch + step_in_epoch, epochs * per_epoch, epoch, epochs, step_in_epoch, per_epoch)


def test_step_loss_and_centre_from_the_building_blocks() -> None:
    m = _model(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=3)
    with torch.no_grad():  # a nonzero centre and a teacher that differs from the student
        m.parts["center"].get_buffer("center").copy_(torch.randn(1, 32))
        for p in m.parts["teacher_head"].parameters():
            p.add_(0.05 * torch.randn_like(p))
    ref = copy.deepcopy(m)
    views, at = _views(), progress(1, 2)
    out = m(views, torch.arange(6), at)

    # main_dino.py by hand: the student over all crops (one backbone pass per resolution, MultiCropWrapper), the
    # teacher over the 2 global crops, DINOLoss at this epoch's teacher temperature, then update_center.
    r = ref.parts
    s_out = r["head"](torch.cat([ref.encoder(torch.cat(views[:2])), ref.encoder(torch.cat(views[2:]))]))
    with torch.no_grad():
        t_out = r["teacher_head"](r["teacher_encoder"](torch.cat(views[:2])))
    temp = dino_teacher_temp(1, 0.04, 0.07, 3)
    assert temp == pytest.approx(0.055) and out.stats["teacher_temp"] == pytest.approx(temp)
    center = r["center"].get_buffer("center")
    want = dino_loss(list(s_out.chunk(4)), list(t_out.chunk(2)), center, 0.1, temp)
    assert torch.allclose(out.loss, want, rtol=0, atol=1e-6)
    new_center = dino_center(center, t_out, 0.9)
    assert torch.allclose(m.parts["center"].get_buffer("center"), new_center, atol=1e-7)
    # The probe reads the backbone features of the first global crop; the health monitor the bottlenecks.
    assert torch.allclose(out.features, ref.encoder(torch.cat(views[:2]))[:6], atol=1e-6)
    assert out.embeddings is not None and [e.shape for e in out.embeddings] == [(6, 8), (6, 8)]
    assert torch.allclose(out.embeddings[0].norm(dim=1), torch.ones(6))
    p_t = F.softmax((t_out - center) / temp, dim=-1)
    entropy = -(p_t * p_t.log()).sum(-1).mean()
    want = want.detach()
    assert float(out.stats["teacher_entropy"]) == pytest.approx(float(entropy), rel=1e-5)
    assert float(out.stats["kl"]) == pytest.approx(float(want - entropy), rel=1e-4, abs=1e-6)


def test_multi_crop_features_run_the_backbone_once_per_resolution() -> None:
    views = _views()
    assert same_size_runs(views) == [(0, 2), (2, 4)]
    calls: list[int] = []
    enc = build_encoder("resnet10", small_stem=True, width=4)
    enc.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    assert multi_crop_features(enc, views).shape == (24, 32) and calls == [12, 12]


def test_teacher_is_the_ema_of_the_student_after_the_step() -> None:
    m = _model(momentum_teacher=0.9)
    with torch.no_grad():
        for p in [*m.encoder.parameters(), *m.parts["head"].parameters()]:
            p.add_(0.1)
    teacher = [p.detach().clone() for p in [*m.parts["teacher_encoder"].parameters(),
                                            *m.parts["teacher_head"].parameters()]]
    student = [p.detach().clone() for p in [*m.encoder.parameters(), *m.parts["head"].parameters()]]
    at = progress(2, 3)
    mom = dino_momentum(0.9, at.step, at.steps)  # cosine_scheduler(0.9, 1, epochs, niter)[13]
    assert m.method.momentum_at(at) == pytest.approx(mom) and 0.9 < mom < 1
    m.after_step(at)
    after = [*m.parts["teacher_encoder"].parameters(), *m.parts["teacher_head"].parameters()]
    for t, s, new in zip(teacher, student, after, strict=True):
        assert torch.allclose(new, mom * t + (1 - mom) * s, atol=1e-6)
    assert all(not p.requires_grad for p in after)


def test_teacher_temperature_warms_up_per_epoch() -> None:
    s = DINO(families=BYOL, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=30)
    temps = [s.teacher_temp_at(progress(e, 4, epochs=100)) for e in (0, 15, 29, 30, 99)]
    assert temps == pytest.approx([0.04, 0.04 + 15 * 0.03 / 29, 0.07, 0.07, 0.07])  # np.linspace(0.04, 0.07, 30)
    assert DINO(families=BYOL).teacher_temp_at(progress(0)) == 0.04  # main_dino.py's defaults: no warm-up


@pytest.mark.parametrize("optimizer", ["adamw", "lars"])
def test_last_layer_is_frozen_during_freeze_last_layer_epochs(optimizer: str) -> None:
    m = _model(freeze_last_layer=1, norm_last_layer=False)
    head = m.part("head", DINOHead)
    opt = build_optimizer(m, optimizer, 0.1, 0.9, 0.04, exclude_norm_bias=True)
    v0, g0, mlp0 = head.weight_v.detach().clone(), head.weight_g.detach().clone(), head.mlp[0].weight.detach().clone()
    for epoch in (0, 0, 1):
        m(_views(), torch.arange(6), progress(epoch)).loss.backward()
        assert head.weight_v.grad is not None and torch.count_nonzero(head.weight_v.grad) > 0  # computed, ...
        opt.step()  # ... and dropped right before the step in epoch 0 (utils.py cancel_gradients_last_layer)
        if epoch == 0:
            assert head.weight_v.grad is None and head.weight_g.grad is None
            assert torch.equal(head.weight_v, v0) and torch.equal(head.weight_g, g0)
            assert head.weight_v not in opt.state or not opt.state[head.weight_v]  # no AdamW step counted
            assert not torch.equal(head.mlp[0].weight, mlp0)  # the rest of the student trains
        else:
            assert head.weight_v.grad is not None and not torch.equal(head.weight_v, v0)
        opt.zero_grad(set_to_none=True)
    assert "active=False" in repr(m.part("freeze", StepFreeze))


def test_norm_last_layer_freezes_g_and_the_freeze_targets_only_trainable_last_layer_params() -> None:
    m = _model()
    head = m.part("head", DINOHead)
    assert not head.weight_g.requires_grad and head.weight_v.requires_grad
    assert m.part("freeze", StepFreeze).targets == [head.weight_v]
    assert torch.count_nonzero(m.parts["center"].get_buffer("center")) == 0


def test_teacher_copy_runs_without_stochastic_depth() -> None:
    import timm

    torch.manual_seed(0)
    trunk = timm.create_model("vit_tiny_patch16_224", img_size=16, patch_size=8, num_classes=0, depth=2,
                              drop_path_rate=0.1, dynamic_img_size=True)
    m = _model(Encoder(trunk, trunk.num_features))
    rates = [getattr(x, "drop_prob", None) for x in m.encoder.modules() if type(x).__name__ == "DropPath"]
    teacher = [x.drop_prob for x in m.parts["teacher_encoder"].modules() if type(x).__name__ == "DropPath"]
    assert rates and max(rates) > 0 and teacher == [0.0] * len(rates)
    assert torch.isfinite(m(_views(2), torch.arange(2), progress(0)).loss)  # a ViT over 16 px and 8 px crops


def test_view_groups_two_global_crops_then_local_crops_each_drawing_its_family() -> None:
    r = validate_dict({"data": {"image_size": 32}, "pretext": {"method": "dino", "p": 0.5, "local_crops": 3}})
    groups = r.pretext.view_groups()
    assert [(g.count, g.size_at(32), g.scale) for g in groups] == [(1, 32, (0.4, 1.0)), (1, 32, (0.4, 1.0)),
                                                                   (3, 14, (0.05, 0.4))]  # 14 = 96 · 32 / 224
    assert [g.params["byol"] for g in groups] == [{"blur_p": 1.0, "solarize_p": 0.0},
                                                  {"blur_p": 0.1, "solarize_p": 0.2},
                                                  {"blur_p": 0.5, "solarize_p": 0.0}]
    sampler = build_view_sampler(r.pretext.family_weights(), 32, groups)
    assert sampler.names == ["augmix_allop", "byol"]  # every crop, the local ones too, draws from both (Eq. 2)
    local = sampler.samplers[2].families
    assert all(isinstance(f, GroupCrop) and f.scale == (0.05, 0.4) for f in local)
    views, fam = sampler(torch.rand(5, 3, 32, 32), torch.Generator().manual_seed(0))
    assert [v.shape[-1] for v in views] == [32, 32, 14, 14, 14] and fam.shape == (5, 5)
    sized = validate_dict({"data": {"image_size": 224}, "pretext": {"method": "dino", "p": 0.5}})
    assert sized.pretext.view_groups()[2].size == 96 and sized.pretext.view_groups()[2].count == 8
    assert len(DINO(families=BYOL, local_crops=0).view_groups()) == 2


def test_chance_loss_is_ln_out_dim() -> None:
    assert DINO(families=BYOL, out_dim=256).chance_loss(64) == pytest.approx(5.545177, rel=1e-6)


@pytest.mark.parametrize(("table", "key"), [
    ({"views": 3}, "pretext.views"),
    ({"local_size": 64}, "pretext.local_size"),
    ({"global_crops_scale": [0.5, 0.4]}, "pretext.global_crops_scale"),
    ({"student_temp": 0}, "pretext.student_temp"),
    ({"queue_size": 4096}, "pretext.queue_size for method 'dino'"),
])
def test_validation_names_the_field(table: dict, key: str) -> None:
    with pytest.raises(RecipeError) as err:
        validate_dict({"data": {"image_size": 32}, "pretext": {"method": "dino", **table}})
    assert key in str(err.value) and "\n" not in str(err.value)


def test_two_processes_match_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    """Two gloo processes on half the batch each (the centre all-reduced, the last layer's gradients dropped
    after DDP's all-reduce) reach the state of one process on the whole batch after two steps
    (tests/helpers/ddp_ssl_step.py)."""
    ddp_ssl_step.assert_two_processes_match_one("dino", tmp_path)


# ------------------------------------------------------------------------------- pretraining the sample


def test_cli_pretraining_on_the_sample_beats_the_untrained_encoder(tmp_path: Path) -> None:
    rows = sample_pretrain.learning_rows("dino", tmp_path)
    knn = [r["knn_top1"] for r in rows if "knn_top1" in r]
    assert knn, "the sample recipe's kNN monitor logged nothing"
    assert rows[-1]["stage"] == "pretrain-done" and set(rows[-1]["family_fraction"]) == {"augmix_allop", "byol"}
    before = sample_pretrain.untrained_knn("dino")
    assert knn[-1] > before + 1, (knn, before)


def test_stop_and_resume_is_bit_identical(tmp_path: Path) -> None:
    sample_pretrain.stop_and_resume_equal_a_full_run("dino", tmp_path)
