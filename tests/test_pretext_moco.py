"""MoCo v2 mechanics: queue, momentum update, shuffle-BN across groups and across real processes."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from urrlkit.models import build_encoder
from urrlkit.pretext.moco import MoCo, grouped_forward
from urrlkit.recipe import PretextConfig

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
import ddp_moco_step


def _moco(**kw: object) -> MoCo:
    torch.manual_seed(0)
    cfg = PretextConfig(queue_size=16, momentum=0.9, temperature=0.2, head_dim=8, head_hidden=16, **kw)
    return MoCo(build_encoder("resnet10", small_stem=True, width=4), cfg)


def test_queue_is_normalised_and_enqueue_wraps() -> None:
    m = _moco()
    assert torch.allclose(m.queue.norm(dim=0), torch.ones(16), atol=1e-5)
    keys = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    for _ in range(4):
        m.enqueue(keys)
    assert int(m.queue_ptr) == 0
    assert torch.allclose(m.queue[:, 12:16], keys.T)
    with pytest.raises(ValueError, match="multiple"):
        m.enqueue(torch.randn(3, 8))


def test_momentum_update_formula() -> None:
    m = _moco()
    q0 = next(m.encoder_q.parameters()).detach().clone()
    with torch.no_grad():
        next(m.encoder_q.parameters()).add_(1.0)
    m.momentum_update()
    k = next(m.encoder_k.parameters())
    assert torch.allclose(k, 0.9 * q0 + 0.1 * (q0 + 1.0), atol=1e-6)


def test_key_encoder_gets_no_gradient_and_loss_is_finite() -> None:
    m = _moco()
    x = torch.rand(4, 3, 16, 16)
    loss, _ = m([x, x.flip(-1)])
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in m.encoder_k.parameters())
    assert any(p.grad is not None for p in m.encoder_q.parameters())


def test_grouped_forward_uses_per_group_batch_statistics() -> None:
    bn = torch.nn.BatchNorm1d(2).train()
    x = torch.cat([torch.zeros(4, 2), torch.ones(4, 2) * 10]) + torch.randn(8, 2) * 0.1
    y = grouped_forward(bn, x, 2)
    # each half is normalised by its own mean, so both halves are centred
    assert y[:4].mean().abs() < 1e-4 and y[4:].mean().abs() < 1e-4
    assert not torch.allclose(y, bn(x))


def test_single_device_shuffle_bn_unshuffles_keys() -> None:
    m = _moco(bn_groups=2).eval()  # eval: BN uses running stats, so shuffling must be invisible
    x = torch.rand(4, 3, 16, 16)
    k_shuffled = m.embed_k(x)
    m.groups = 1
    assert torch.allclose(k_shuffled, m.embed_k(x), atol=1e-5)


def test_two_processes_match_single_process_maths(tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    proc = subprocess.run([sys.executable, str(Path(ddp_moco_step.__file__)), str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp = load_file(str(out))
    model, opt = ddp_moco_step.make(groups=2)
    xq, xk = ddp_moco_step.data()
    for _ in range(2):
        loss, _ = model([xq, xk])
        loss.backward()
        opt.step()
        opt.zero_grad()
    single = ddp_moco_step.state(model)
    assert set(single) == set(ddp)
    # BN running statistics are per-device state (DDP saves rank 0's copy, which has seen only its half), so
    # they legitimately differ; every weight, the queue and the pointer must agree.
    compared = [k for k in single if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert any(k == "queue" for k in compared)
    for key in compared:
        value = single[key]
        assert torch.allclose(value.float(), ddp[key].float(), atol=2e-5, rtol=1e-4), key
    assert int(ddp["queue_ptr"]) == 16  # two global batches of 8 enqueued
