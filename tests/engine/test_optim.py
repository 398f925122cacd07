"""engine/optim.py and the loop's schedules: LARS (timm's) with its norm/bias groups, parameter groups that keep a
caller's keys, the per-step warm-up + cosine lr, the weight-decay cosine, both clipping modes, and that the
defaults leave `fit` as it was."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from urrlkit.engine import loop as loop_module
from urrlkit.engine.checkpoint import Checkpointer
from urrlkit.engine.loop import LoopSpec, fit, make_accelerator
from urrlkit.engine.optim import build_optimizer, clip_gradients, clip_per_param, split_norm_bias
from urrlkit.engine.schedule import cosine_between, lr_at, lr_at_step


def conv_bn() -> nn.Sequential:
    """A conv weight (3, 2, 3, 3) and bias, a BatchNorm weight and bias, all 0.5; gradients all 0.2."""
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
            p.grad = torch.full_like(p, 0.2)
    return model


def test_lars_adapts_the_conv_weight_by_the_trust_ratio_and_leaves_bias_and_bn_to_sgd_momentum() -> None:
    model = conv_bn()
    lr, m, wd, eta = 0.5, 0.9, 0.1, 0.001
    opt = build_optimizer(model, "lars", lr, m, wd, exclude_norm_bias=True, trust=eta)
    assert type(opt).__module__ == "timm.optim.lars"
    plain = [p.detach().clone().requires_grad_() for p in model.parameters()]
    for q in plain:
        q.grad = torch.full_like(q, 0.2)
    sgd = torch.optim.SGD(plain[1:], lr=lr, momentum=m, weight_decay=0)
    weight = model[0].weight
    # step 1 by hand, all elements 0.5 with gradient 0.2 (n = 54 elements; √n cancels but for the 1e-8):
    # trust = η‖w‖ / (‖g‖ + wd‖w‖) = 0.001·0.5 / (0.2 + 0.1·0.5) = 0.002; update (g + wd·w)·trust = 0.0005
    opt.step()
    sgd.step()
    assert torch.allclose(weight, torch.full_like(weight, 0.5 - 0.5 * 0.0005), rtol=0, atol=1e-8)
    buf = torch.full((3, 2, 3, 3), 0.0005, dtype=torch.float64)
    # step 2, uneven gradients: timm's formula on the tensors, in float64
    g = torch.linspace(-1.0, 2.0, weight.numel()).reshape(weight.shape)
    for p, q in zip(model.parameters(), plain, strict=True):
        grad = g if p is weight else torch.linspace(0.3, -0.4, p.numel())
        p.grad, q.grad = grad.clone(), grad.clone()
    w, g64 = weight.detach().double(), g.double()
    trust = eta * w.norm() / (g64.norm() + wd * w.norm() + 1e-8)
    buf = m * buf + (g64 + wd * w) * trust
    expected = w - lr * buf
    opt.step()
    sgd.step()
    assert torch.allclose(weight.double(), expected, rtol=0, atol=1e-7)
    # bias and BN: exactly SGD with momentum and no weight decay, no adaptation
    for p, q in zip(list(model.parameters())[1:], plain[1:], strict=True):
        assert torch.equal(p, q)


def test_lars_groups_and_what_adapts() -> None:
    model = conv_bn()
    opt = build_optimizer(model, "lars", 0.5, 0.9, 0.1, exclude_norm_bias=True)
    groups = [(len(g["params"]), g["weight_decay"], g["always_adapt"], g["trust_coeff"]) for g in opt.param_groups]
    assert groups == [(1, 0.1, True, 0.001), (3, 0.0, False, 0.001)]
    # without the exclusion every parameter decays and adapts (SimCLR with empty exclude lists)
    every = build_optimizer(conv_bn(), "lars", 0.5, 0.9, 0.1, trust=0.02)
    assert [(g["weight_decay"], g["always_adapt"], g["trust_coeff"]) for g in every.param_groups] == [
        (0.1, True, 0.02)]
    # a caller's group with weight decay 0 still adapts (moco-v3 and SimCLR adapt whatever the decay) ...
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    lin.weight.grad = torch.full_like(lin.weight, 2.0)
    build_optimizer(lin, "lars", 1.0, 0.0, 0.1, params=[{"params": [lin.weight], "weight_decay": 0.0}]).step()
    assert torch.allclose(lin.weight, torch.full_like(lin.weight, 1.0 - 0.001 * 1.0 / 2.0 * 2.0))  # η‖w‖/‖g‖·g
    # ... unless it says otherwise
    lin.weight.grad = torch.full_like(lin.weight, 2.0)
    before = lin.weight.detach().clone()
    build_optimizer(lin, "lars", 1.0, 0.0, 0.1, params=[{"params": [lin.weight], "weight_decay": 0.0,
                                                         "always_adapt": False}]).step()
    assert torch.equal(lin.weight, before - 2.0)


def test_split_norm_bias_keeps_caller_keys_and_splits_only_what_decays() -> None:
    body, probe = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)), nn.Linear(3, 2)
    caller = [{"params": list(body.parameters()), "lr_scale": 0.5},
              {"params": list(probe.parameters()), "weight_decay": 0.0, "lr_scale": 3.0}]
    opt = build_optimizer(body, "sgd", 0.1, 0.9, 1e-4, params=caller, exclude_norm_bias=True)
    got = [([tuple(p.shape) for p in g["params"]], g["weight_decay"], g.get("lr_scale")) for g in opt.param_groups]
    assert got == [([(3, 4)], 1e-4, 0.5),  # the decaying group's matrices keep its decay and lr_scale
                   ([(3,), (3,), (3,)], 0.0, 0.5),  # its bias and LayerNorm weight/bias: no decay, same lr_scale
                   ([(2, 3), (2,)], 0.0, 3.0)]  # the probe's group, already without decay: as it was
    assert len(caller[0]["params"]) == 4 and "weight_decay" not in caller[0]  # the caller's dicts are untouched
    # LARS splits the non-decaying group too: its bias must not adapt
    lars = split_norm_bias([{"params": list(probe.parameters()), "weight_decay": 0.0, "lr_scale": 3.0}], 1e-4,
                           lars=True)
    assert [(len(g["params"]), g["weight_decay"], g["lr_scale"], g.get("always_adapt")) for g in lars] == [
        (1, 0.0, 3.0, None), (1, 0.0, 3.0, False)]
    # the positional call of finetune/train.py and pretext/workflow.py, and the default: one group, all decaying
    same = build_optimizer(body, "sgd", 0.1, 0.9, 1e-4, caller)
    assert [len(g["params"]) for g in same.param_groups] == [4, 2]
    default = build_optimizer(body, "sgd", 0.1, 0.9, 1e-4)
    old = torch.optim.SGD([p for p in body.parameters() if p.requires_grad], lr=0.1, momentum=0.9,
                          weight_decay=1e-4)
    assert default.state_dict() == old.state_dict()


def test_adamw_betas_and_unknown_names() -> None:
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, "adamw", 1e-3, 0.9, 0.05, betas=(0.9, 0.95), exclude_norm_bias=True)
    assert isinstance(opt, torch.optim.AdamW)
    assert [(g["betas"], g["weight_decay"], len(g["params"])) for g in opt.param_groups] == [
        ((0.9, 0.95), 0.05, 1), ((0.9, 0.95), 0.0, 1)]
    with pytest.raises(ValueError, match="lamb"):
        build_optimizer(model, "lamb", 0.1, 0.9, 0.0)


def test_per_step_warmup_and_cosine_values() -> None:
    # moco-v3 adjust_learning_rate(epoch + i / iters): lr·t/W in the warm-up, then the half cycle over E − W
    assert lr_at_step(1.0, 0.0, 10, warmup_epochs=2) == 0.0
    assert lr_at_step(1.0, 0.5, 10, warmup_epochs=2) == 0.25
    assert lr_at_step(1.0, 2.0, 10, warmup_epochs=2) == 1.0
    assert lr_at_step(1.0, 4.0, 10, warmup_epochs=2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at_step(1.0, 6.0, 10, warmup_epochs=2) == pytest.approx(0.5)
    assert lr_at_step(0.8, 5.0, 10) == pytest.approx(0.4)  # no warm-up: MoCo's cosine, per step
    assert lr_at_step(1.0, 3.5, 10, "step", (3, 6), 2) == pytest.approx(0.1)
    assert lr_at_step(1.0, 1.0, 10, "constant", (), 2) == 0.5
    # the per-epoch rule stays as it was: warm-up lr·(e+1)/(W+1), cosine over all epochs
    assert [lr_at(1.0, e, 10, warmup_epochs=2) for e in (0, 1)] == [1 / 3, 2 / 3]
    assert lr_at(1.0, 5, 10, warmup_epochs=2) == pytest.approx(0.5)


def test_weight_decay_cosine_values() -> None:
    # DINO's weight decay 0.04 → 0.4 (cosine_scheduler without warm-up)
    assert cosine_between(0.04, 0.4, 0.0) == pytest.approx(0.04)  # DINO's formula, not exactly 0.04 in floats
    assert cosine_between(0.04, 0.4, 0.5) == pytest.approx(0.22)
    assert cosine_between(0.04, 0.4, 1.0) == pytest.approx(0.4)
    assert cosine_between(0.04, 0.4, 0.25) == pytest.approx(0.4 - 0.18 * (1 + math.cos(math.pi / 4)))


def test_clip_per_param_and_global() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.5])
    clip_per_param([a, b], 1.0)
    # DINO clip_gradients: coefficient 1 / (‖g‖ + 1e-6) where below 1, each parameter on its own
    assert torch.allclose(a.grad, torch.tensor([3.0, 4.0]) / (5.0 + 1e-6), rtol=1e-6)
    assert torch.equal(b.grad, torch.tensor([0.5]))

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))

    acc = make_accelerator(Path("."), seed=0)
    model = Two()
    model.a.grad, model.b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.5])
    clip_gradients(acc, model, 1.0, "global")
    coef = 1.0 / (math.sqrt(25.25) + 1e-6)  # one norm over all gradients
    assert torch.allclose(model.a.grad, torch.tensor([3.0, 4.0]) * coef, rtol=1e-6)
    assert torch.allclose(model.b.grad, torch.tensor([0.5]) * coef, rtol=1e-6)
    model.a.grad, model.b.grad = torch.tensor([3.0, 4.0]), torch.tensor([0.5])
    clip_gradients(acc, model, 1.0, "per_param")
    assert torch.equal(model.b.grad, torch.tensor([0.5])) and float(model.a.grad.norm()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="per_layer"):
        clip_gradients(acc, model, 1.0, "per_layer")


# ------------------------------------------------------------------------------------------ the loop
def setup(run_dir: Path, name: str = "sgd", grad_accum: int = 1, **opt_kw: Any) -> tuple:
    """3 steps per epoch (24 samples, batches of 8) of Linear(4, 2) → BatchNorm1d(2): a weight that decays, a
    bias and BN parameters in a group of their own when opt_kw asks for exclude_norm_bias."""
    acc = make_accelerator(run_dir, seed=0, grad_accum=grad_accum)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2))
    opt = build_optimizer(model, name, 0.1, 0.9, 1e-2, **opt_kw)
    data = TensorDataset(torch.randn(24, 4, generator=torch.Generator().manual_seed(1)), torch.ones(24, 2))
    model, opt, loader = acc.prepare(model, opt, DataLoader(data, batch_size=8, shuffle=True))
    return acc, model, opt, loader


def trace_step(model: nn.Module, opt: torch.optim.Optimizer, seen: list[tuple[float, ...]]
               ) -> Callable[[list[torch.Tensor], object], tuple[torch.Tensor, dict[str, float]]]:
    """A step that records each group's (lr, weight decay) as the optimizer step will apply them."""
    def step(batch: list[torch.Tensor], progress: object) -> tuple[torch.Tensor, dict[str, float]]:
        seen.append(tuple(x for g in opt.param_groups for x in (g["lr"], g["weight_decay"])))
        x, y = batch
        return (model(x) - y).square().mean(), {}
    return step


def run_fit(run_dir: Path, spec: LoopSpec, name: str = "sgd", stop_after: int | None = None, resume: bool = False,
            **opt_kw: Any) -> tuple[nn.Module, list[tuple[float, ...]]]:
    acc, model, opt, loader = setup(run_dir, name, **opt_kw)
    seen: list[tuple[float, ...]] = []
    spec.stop_after = stop_after
    fit(acc, model, opt, loader, trace_step(model, opt, seen), spec, Checkpointer(acc, run_dir / "ckpt"), None,
        [], resume=resume)
    return model, seen


def test_defaults_leave_fit_as_it_was(tmp_path: Path) -> None:
    """A default LoopSpec trains exactly as the loop did before the per-step options: the lr set once per epoch
    by lr_at (warm-up and cosine) on every group, no weight-decay schedule, no clipping."""
    spec = LoopSpec(epochs=3, lr=0.1, warmup_epochs=1, log_every=100)
    model, seen = run_fit(tmp_path / "fit", spec)
    acc, ref, opt, loader = setup(tmp_path / "ref")
    for epoch in range(3):  # the loop as it was: lr per epoch, then backward and step per batch
        loader.set_epoch(epoch)
        for group in opt.param_groups:
            group["lr"] = lr_at(0.1, epoch, 3, "cosine", (), 1)
        for x, y in loader:
            with acc.accumulate(ref):
                acc.backward((ref(x) - y).square().mean())
                opt.step()
                opt.zero_grad(set_to_none=True)
    for a, b in zip(model.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [s[0] for s in seen] == [lr_at(0.1, e, 3, "cosine", (), 1) for e in range(3) for _ in range(3)]
    assert {s[1] for s in seen} == {1e-2}


def test_per_step_lr_and_weight_decay_schedules_in_fit(tmp_path: Path) -> None:
    spec = LoopSpec(epochs=3, lr=0.1, warmup_epochs=1, log_every=100, schedule_per="step", weight_decay=1e-2,
                    weight_decay_end=0.1)
    _, seen = run_fit(tmp_path, spec, exclude_norm_bias=True)
    ts = [k / 3 for k in range(9)]
    lrs = [0.1 * t if t < 1 else 0.1 * 0.5 * (1 + math.cos(math.pi * (t - 1) / 2)) for t in ts]
    wds = [0.1 + 0.5 * (1e-2 - 0.1) * (1 + math.cos(math.pi * t / 3)) for t in ts]
    # group 0: the Linear weight (scheduled decay), group 1: bias and BN (decay stays 0)
    assert [s[0] for s in seen] == pytest.approx(lrs) and [s[2] for s in seen] == pytest.approx(lrs)
    assert [s[1] for s in seen] == pytest.approx(wds) and {s[3] for s in seen} == {0.0}
    # per epoch: the same weight-decay cosine, held for the epoch
    _, per_epoch = run_fit(tmp_path / "e", LoopSpec(epochs=3, lr=0.1, log_every=100, weight_decay=1e-2,
                                                     weight_decay_end=0.1), exclude_norm_bias=True)
    assert [s[1] for s in per_epoch] == pytest.approx([wds[3 * (k // 3)] for k in range(9)])
    with pytest.raises(ValueError, match="weight_decay_end"):
        LoopSpec(epochs=3, lr=0.1, weight_decay_end=0.1)


def test_lr_scale_groups_follow_the_per_step_lr(tmp_path: Path) -> None:
    acc, model, _, loader = setup(tmp_path)
    opt = acc.prepare(build_optimizer(model, "sgd", 0.1, 0.9, 0.0, params=[
        {"params": list(model[0].parameters())}, {"params": list(model[1].parameters()), "lr_scale": 2.0}]))
    seen: list[tuple[float, ...]] = []
    fit(acc, model, opt, loader, trace_step(model, opt, seen),
        LoopSpec(epochs=2, lr=0.1, log_every=100, schedule_per="step"), None, None, [])
    assert [s[2] for s in seen] == pytest.approx([2 * s[0] for s in seen])
    assert [s[0] for s in seen] == pytest.approx([0.05 * (1 + math.cos(math.pi * k / 6)) for k in range(6)])


def test_lars_per_step_with_clipping_resumes_exactly(tmp_path: Path) -> None:
    def spec() -> LoopSpec:
        return LoopSpec(epochs=3, lr=0.1, warmup_epochs=1, log_every=100, checkpoint_every=2, schedule_per="step",
                        weight_decay=1e-2, weight_decay_end=0.1, clip_grad=0.5, clip_grad_mode="per_param")

    whole, seen = run_fit(tmp_path / "whole", spec(), "lars", exclude_norm_bias=True)
    run_fit(tmp_path / "cut", spec(), "lars", stop_after=4, exclude_norm_bias=True)
    resumed, seen_after = run_fit(tmp_path / "cut", spec(), "lars", resume=True, exclude_norm_bias=True)
    assert seen_after == seen[4:]  # lr and weight decay from the checkpointed position
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["global", "per_param"])
def test_clipping_runs_once_per_applied_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    calls: list[tuple[float, str]] = []
    monkeypatch.setattr(loop_module, "clip_gradients", lambda acc, model, norm, how: calls.append((norm, how)))
    acc, model, opt, loader = setup(tmp_path, grad_accum=2)
    applied: list[int] = []
    fit(acc, model, opt, loader, trace_step(model, opt, []),
        LoopSpec(epochs=2, lr=0.1, log_every=100, clip_grad=1.5, clip_grad_mode=mode),
        None, None, [], after_step=lambda p: applied.append(p.step))
    assert applied == [1, 2, 4, 5]  # 3 batches per epoch, accumulating 2: steps 2 and 3 (the epoch's end) apply
    assert calls == [(1.5, mode)] * 4
