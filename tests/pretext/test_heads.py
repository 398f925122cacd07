"""Heads of SimCLR, BYOL, MoCo v3 and DINO: layer structure, bias and BN flags as the official code builds them
(google-research/simclr, deepmind-research byol, facebookresearch/moco-v3, facebookresearch/dino), DINO's
weight-normalised last layer with g fixed to 1, and DINO's last-layer gradient cancelling."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from urrlkit.pretext.ema import ema_update_, momentum_copy
from urrlkit.pretext.heads import (
    DINOHead,
    ScaleBatchNorm1d,
    byol_mlp,
    cancel_last_layer_grads,
    mlp_head,
    moco_v3_heads,
    moco_v3_mlp,
    simclr_projection_head,
)


def layout(m: nn.Sequential) -> list[str]:
    """One token per layer: L<in>x<out>[b] (b = bias), BN / BNs (γ only) / BN0 (affine False), R (ReLU)."""
    out = []
    for layer in m:
        if isinstance(layer, nn.Linear):
            out.append(f"L{layer.in_features}x{layer.out_features}{'b' if layer.bias is not None else ''}")
        elif isinstance(layer, ScaleBatchNorm1d):
            out.append("BNs")
        elif isinstance(layer, nn.BatchNorm1d):
            out.append("BN" if layer.affine else "BN0")
        elif isinstance(layer, nn.ReLU):
            out.append("R")
        else:
            out.append(type(layer).__name__)
    return out


def test_moco_v3_heads_as_builder_py() -> None:
    proj, pred = moco_v3_heads(2048, vit=False)
    assert layout(proj) == ["L2048x4096", "BN", "R", "L4096x256", "BN0"]
    assert layout(pred) == ["L256x4096", "BN", "R", "L4096x256"]
    proj, pred = moco_v3_heads(384, vit=True)
    assert layout(proj) == ["L384x4096", "BN", "R", "L4096x4096", "BN", "R", "L4096x256", "BN0"]
    assert layout(pred) == ["L256x4096", "BN", "R", "L4096x256", "BN0"]
    assert layout(moco_v3_mlp(1, 8, 16, 4, last_bn=False)) == ["L8x4"]


def test_byol_mlp_as_networks_py() -> None:
    m = byol_mlp(2048)
    assert layout(m) == ["L2048x4096b", "BN", "R", "L4096x256"]
    # haiku's default init: truncated normal σ = 1/√fan_in within ±2σ, zero biases.
    w = m[0].weight
    assert w.abs().max() <= 2 / math.sqrt(2048) + 1e-7
    assert float(w.detach().std()) == pytest.approx(0.8796 / math.sqrt(2048), rel=0.02)  # std of N(0,1) cut at ±2
    assert torch.count_nonzero(m[0].bias) == 0
    assert m[3].weight.abs().max() <= 2 / math.sqrt(4096) + 1e-7


def test_simclr_head_as_model_util_py() -> None:
    m = simclr_projection_head(512)
    assert layout(m) == ["L512x512", "BN", "R", "L512x512", "BN", "R", "L512x128", "BNs"]
    assert layout(simclr_projection_head(64, num_layers=2)) == ["L64x64", "BN", "R", "L64x128", "BNs"]
    assert float(m[0].weight.detach().std()) == pytest.approx(0.01, rel=0.02)


def test_scale_batch_norm_is_plain_bn_times_gamma() -> None:
    bn = ScaleBatchNorm1d(3)
    assert bn.bias is None and [n for n, _ in bn.named_parameters()] == ["weight"]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, -0.5]))
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    plain = nn.BatchNorm1d(3, affine=False)
    torch.testing.assert_close(bn(x), plain(x) * bn.weight)
    torch.testing.assert_close(bn.running_mean, plain.running_mean)
    bn.eval()
    plain.eval()
    torch.testing.assert_close(bn(x), plain(x) * bn.weight)
    assert set(bn.state_dict()) == {"weight", "running_mean", "running_var", "num_batches_tracked"}


def test_mlp_head_options() -> None:
    assert layout(mlp_head(4, 8, 2, 3, batch_norm=False)) == ["L4x8b", "R", "L8x8b", "R", "L8x2b"]
    assert layout(mlp_head(4, 8, 2, 1, last_bn="affine")) == ["L4x2b", "BN"]
    with pytest.raises(ValueError, match="num_layers"):
        mlp_head(4, 8, 2, 0)
    with pytest.raises(ValueError, match="last_bn"):
        mlp_head(4, 8, 2, last_bn="group")  # type: ignore[arg-type]


def test_heads_draw_only_from_global_rng() -> None:
    def weights() -> list[torch.Tensor]:
        torch.manual_seed(3)
        return [p.detach().clone() for p in (*byol_mlp(8, 16, 4).parameters(), *DINOHead(8, 10, 16, 4).parameters())]

    a, b = weights(), weights()
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


class ReferenceDINOHead(nn.Module):
    """facebookresearch/dino vision_transformer.py DINOHead, restated with the deprecated nn.utils.weight_norm."""

    def __init__(self, in_dim: int, out_dim: int, use_bn: bool, norm_last_layer: bool, nlayers: int,
                 hidden_dim: int, bottleneck_dim: int) -> None:
        super().__init__()
        nlayers = max(nlayers, 1)
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            for _ in range(nlayers - 2):
                layers.append(nn.Linear(hidden_dim, hidden_dim))
                if use_bn:
                    layers.append(nn.BatchNorm1d(hidden_dim))
                layers.append(nn.GELU())
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def _init_weights(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
@pytest.mark.parametrize(("nlayers", "use_bn", "norm_last"), [(3, False, True), (1, False, True), (4, True, False)])
def test_dino_head_equals_reference_under_the_same_seed(nlayers: int, use_bn: bool, norm_last: bool) -> None:
    torch.manual_seed(7)
    ours = DINOHead(12, out_dim=20, hidden_dim=16, bottleneck_dim=6, num_layers=nlayers, use_bn=use_bn,
                    norm_last_layer=norm_last)
    torch.manual_seed(7)
    ref = ReferenceDINOHead(12, 20, use_bn, norm_last, nlayers, 16, 6)
    ours_mlp = dict(ours.mlp.named_parameters())
    for name, p in ref.mlp.named_parameters():
        assert torch.equal(ours_mlp[name], p), name
    assert torch.equal(ours.weight_v, ref.last_layer.weight_v)
    assert torch.equal(ours.weight_g, ref.last_layer.weight_g)
    x = torch.randn(5, 12)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-7)
    assert ours.weight_g.requires_grad is (not norm_last)
    assert sum(p.requires_grad for p in ours.parameters()) == sum(p.requires_grad for p in ref.parameters())


def test_dino_last_layer_is_normalised_rows_and_g_stays_one() -> None:
    torch.manual_seed(0)
    head = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=4)
    assert torch.equal(head.weight_g, torch.ones(10, 1)) and not head.weight_g.requires_grad
    x = torch.randn(3, 8)
    expected = F.normalize(head.mlp(x), dim=-1) @ F.normalize(head.weight_v, dim=1).T
    torch.testing.assert_close(head(x), expected, rtol=1e-6, atol=1e-7)
    # A training step moves V but never g: the last layer stays x ↦ x·(V/‖V_row‖)ᵀ.
    opt = torch.optim.SGD([p for p in head.parameters() if p.requires_grad], lr=1.0, weight_decay=0.1)
    v0 = head.weight_v.detach().clone()
    head(x).square().sum().backward()
    opt.step()
    assert head.weight_g.grad is None and torch.equal(head.weight_g, torch.ones(10, 1))
    assert not torch.equal(head.weight_v, v0)
    expected = F.normalize(head.mlp(x), dim=-1) @ F.normalize(head.weight_v, dim=1).T
    torch.testing.assert_close(head(x), expected, rtol=1e-6, atol=1e-7)


def test_dino_head_teacher_copy_and_ema() -> None:
    torch.manual_seed(1)
    student = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=4)
    teacher = momentum_copy(student)
    x = torch.randn(3, 8)
    torch.testing.assert_close(teacher(x), student(x))
    assert not any(p.requires_grad for p in teacher.parameters())
    ema_update_(teacher.parameters(), student.parameters(), 0.996)
    assert torch.equal(teacher.weight_g, torch.ones(10, 1))


def test_cancel_last_layer_grads_only_during_freeze_epochs() -> None:
    torch.manual_seed(2)
    head = DINOHead(8, out_dim=10, hidden_dim=16, bottleneck_dim=4, norm_last_layer=False)
    wrapper = nn.ModuleDict({"head": head})
    for epoch, cancelled in ((0, True), (1, False)):
        head.zero_grad(set_to_none=True)
        head(torch.randn(3, 8)).square().sum().backward()
        cancel_last_layer_grads(wrapper, epoch, freeze_last_layer=1)
        assert (head.weight_v.grad is None) is cancelled
        assert (head.weight_g.grad is None) is cancelled
        assert all(p.grad is not None for p in head.mlp.parameters())
