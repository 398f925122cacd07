"""MoCo v3 (urrlkit/pretext/methods/moco_v3.py) against facebookresearch/moco-v3: the loss of a step equals the
building blocks' direct computation, the momentum schedule and update order, heads per backbone kind, the frozen
patch projection of a timm ViT, the asymmetric BYOL views, validation errors."""

from __future__ import annotations

import copy
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from urrlkit.augment.multiview import build_view_sampler
from urrlkit.config import validate_dict
from urrlkit.engine.progress import Progress
from urrlkit.errors import RecipeError
from urrlkit.models import Encoder, build_encoder
from urrlkit.pretext.ema import ema_update_
from urrlkit.pretext.losses import moco_v3_loss
from urrlkit.pretext.methods.moco_v3 import MoCoV3
from urrlkit.pretext.model import BuildContext, PretextModel, build_model
from urrlkit.pretext.schedules import moco_v3_momentum

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "helpers"))
import ddp_ssl_step
import sample_pretrain

BYOL = [{"name": "byol"}]


def _model(encoder: Encoder | None = None, **kw: object) -> PretextModel:
    torch.manual_seed(0)
    settings = MoCoV3(families=BYOL, dim=8, mlp_dim=16, temperature=0.2, momentum=0.9, **kw)
    enc = encoder if encoder is not None else build_encoder("resnet10", small_stem=True, width=4)
    return build_model(settings, enc, BuildContext(num_samples=0, epochs=4, steps_per_epoch=5))


def _tiny_vit() -> Encoder:
    import timm

    torch.manual_seed(0)
    trunk = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=0, depth=2)
    return Encoder(trunk, trunk.num_features)


def _linears(m: nn.Module) -> int:
    return sum(isinstance(x, nn.Linear) for x in m.modules())


PROGRESS = Progress(step=7, steps=20, epoch=1, epochs=4, step_in_epoch=2, steps_per_epoch=5)


def test_step_loss_is_the_symmetric_moco_v3_loss_after_the_momentum_update() -> None:
    m = _model()
    with torch.no_grad():  # move the base encoder away from the momentum copy, so the update is visible
        for p in [*m.encoder.parameters(), *m.parts["projector"].parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    ref = copy.deepcopy(m)
    x1, x2 = torch.rand(8, 3, 16, 16), torch.rand(8, 3, 16, 16)
    out = m([x1, x2], torch.arange(8), PROGRESS)

    # builder.py forward by hand: queries, then the momentum update with m of the fractional epoch 1 + 2/5, keys.
    r = ref.parts
    f1 = ref.encoder(x1)
    q1, q2 = (r["predictor"](r["projector"](f)) for f in (f1, ref.encoder(x2)))
    mom = moco_v3_momentum(0.9, 1 + 2 / 5, 4)
    ema_update_([*r["encoder_k"].parameters(), *r["projector_k"].parameters()],
                [*ref.encoder.parameters(), *r["projector"].parameters()], mom)
    with torch.no_grad():
        k1, k2 = (r["projector_k"](r["encoder_k"](x)) for x in (x1, x2))
    want = moco_v3_loss(q1, k2, 0.2) + moco_v3_loss(q2, k1, 0.2)
    assert torch.allclose(out.loss, want, rtol=0, atol=1e-6)
    assert out.stats["moco_m"] == pytest.approx(mom)
    assert torch.allclose(out.features, f1) and out.features.shape == (8, 32)
    assert out.embeddings is not None and [e.shape for e in out.embeddings] == [(8, 8), (8, 8)]
    for a, b in zip(m.parts["encoder_k"].parameters(), r["encoder_k"].parameters(), strict=True):
        assert torch.equal(a, b)
    # Gradient reaches the base encoder, projector and predictor, never the momentum copies.
    out.loss.backward()
    assert all(p.grad is not None for p in m.parts["predictor"].parameters())
    assert all(p.grad is None for p in m.parts["encoder_k"].parameters())


def test_momentum_follows_the_cosine_schedule_per_iteration() -> None:
    s = MoCoV3(families=BYOL, momentum=0.99)
    at = [s.momentum_at(Progress(e * 10 + i, 100, e, 10, i, 10)) for e, i in ((0, 0), (5, 0), (2, 3))]
    assert at[0] == pytest.approx(0.99) and at[1] == pytest.approx(0.995)
    assert at[2] == pytest.approx(1 - 0.5 * (1 + math.cos(math.pi * 2.3 / 10)) * 0.01)  # adjust_moco_momentum
    assert MoCoV3(families=BYOL, momentum=0.99, momentum_cos=False).momentum_at(Progress(50, 100, 5, 10)) == 0.99


def test_heads_per_backbone_kind_and_momentum_copies() -> None:
    m = _model()
    p = m.parts
    assert _linears(p["projector"]) == 2 and not isinstance(p["predictor"][-1], nn.BatchNorm1d)  # MoCo_ResNet
    assert all(not q.requires_grad for q in [*p["encoder_k"].parameters(), *p["projector_k"].parameters()])
    assert all(torch.equal(a, b) for a, b in zip(m.encoder.parameters(), p["encoder_k"].parameters(), strict=True))
    # torchvision's zero_init_residual=True, as main_moco.py builds its ResNets.
    blocks = [b for b in m.encoder.modules() if type(b).__name__ == "BasicBlock"]
    assert blocks and all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)
    plain = _model(zero_init_residual=False)
    assert all(torch.all(b.bn2.weight == 1) for b in plain.encoder.modules() if type(b).__name__ == "BasicBlock")
    vit = _model(_tiny_vit())
    assert _linears(vit.parts["projector"]) == 3 and isinstance(vit.parts["predictor"][-1], nn.BatchNorm1d)


def test_stop_grad_conv1_freezes_a_timm_vit_patch_projection() -> None:
    m = _model(_tiny_vit(), stop_grad_conv1=True)
    proj = m.encoder.trunk.patch_embed.proj
    before = proj.weight.detach().clone()
    assert not proj.weight.requires_grad and not proj.bias.requires_grad
    opt = torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-2)
    out = m([torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)], torch.arange(4), PROGRESS)
    out.loss.backward()
    assert proj.weight.grad is None and m.encoder.trunk.blocks[0].attn.qkv.weight.grad is not None
    opt.step()
    assert torch.equal(proj.weight, before)
    with pytest.raises(RecipeError, match=r"pretext\.stop_grad_conv1.*patch"):
        _model(stop_grad_conv1=True)  # a ResNet has no patch embedding


def test_two_views_with_byols_asymmetric_blur_and_solarization() -> None:
    r = validate_dict({"data": {"image_size": 32}, "pretext": {"method": "moco_v3", "p": 0.5, "crop_min": 0.2}})
    assert [f.name for f in r.pretext.family_weights()] == ["augmix_allop", "byol"]  # Eq. 2 around BYOL's family
    groups = r.pretext.view_groups()
    assert [g.params["byol"] for g in groups] == [{"blur_p": 1.0, "solarize_p": 0.0, "scale_min": 0.2},
                                                  {"blur_p": 0.1, "solarize_p": 0.2, "scale_min": 0.2}]
    sampler = build_view_sampler(r.pretext.family_weights(), 32, groups)
    fams = [s.families[1] for s in sampler.samplers]  # the byol family of each view
    assert [(f.blur_p, f.solarize_p, f.scale) for f in fams] == [(1.0, 0.0, (0.2, 1.0)), (0.1, 0.2, (0.2, 1.0))]
    views, fam = sampler(torch.rand(6, 3, 40, 40), torch.Generator().manual_seed(0))
    assert [v.shape for v in views] == [(6, 3, 32, 32)] * 2 and fam.shape == (2, 6)
    # Without the byol family in the list (here MoCo v2's), the views keep that family's own settings.
    assert all(not g.params for g in MoCoV3(families=[{"name": "moco_v2"}]).view_groups())


def test_chance_loss_is_two_terms_of_two_tau_ln_batch() -> None:
    assert MoCoV3(families=BYOL, temperature=0.2).chance_loss(256) == pytest.approx(2 * 2 * 0.2 * math.log(256))
    m = _model()
    with torch.no_grad():  # an encoder that maps every image to the same point scores exactly chance
        x = torch.rand(1, 3, 16, 16).expand(8, 3, 16, 16).contiguous()
        m.eval()
        loss = m([x, x], torch.arange(8), PROGRESS).loss
    assert float(loss) == pytest.approx(m.method.chance_loss(8), rel=1e-5)


@pytest.mark.parametrize(("table", "key"), [
    ({"views": 3}, "pretext.views"),
    ({"temperature": 0}, "pretext.temperature"),
    ({"queue_size": 4096}, "pretext.queue_size for method 'moco_v3'"),
    ({"crop_min": 1.5}, "pretext.crop_min"),
])
def test_validation_names_the_field(table: dict, key: str) -> None:
    with pytest.raises(RecipeError) as err:
        validate_dict({"pretext": {"method": "moco_v3", **table}})
    assert key in str(err.value) and "\n" not in str(err.value)


def test_two_processes_match_one_process_on_the_whole_batch(tmp_path: Path) -> None:
    """Two gloo processes on half the batch each (the keys gathered from every process) reach the state of one
    process on the whole batch after two steps (tests/helpers/ddp_ssl_step.py)."""
    ddp_ssl_step.assert_two_processes_match_one("moco_v3", tmp_path)


# ------------------------------------------------------------------------------- pretraining the sample


def test_cli_pretraining_on_the_sample_beats_the_untrained_encoder(tmp_path: Path) -> None:
    rows = sample_pretrain.learning_rows("moco_v3", tmp_path)
    knn = [r["knn_top1"] for r in rows if "knn_top1" in r]
    assert knn, "the sample recipe's kNN monitor logged nothing"
    assert rows[-1]["stage"] == "pretrain-done" and set(rows[-1]["family_fraction"]) == {"augmix_allop", "byol"}
    before = sample_pretrain.untrained_knn("moco_v3")
    assert knn[-1] > before + 1, (knn, before)


def test_stop_and_resume_is_bit_identical(tmp_path: Path) -> None:
    sample_pretrain.stop_and_resume_equal_a_full_run("moco_v3", tmp_path)
