"""MoCo v2 mechanics: queue, momentum update, shuffle-BN across groups and across real processes."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file

from urrlkit.config import validate_dict
from urrlkit.engine.checkpoint import module_generators
from urrlkit.errors import RecipeError
from urrlkit.models import build_encoder
from urrlkit.pretext.blocks import Queue, RandomStream, shuffled_keys
from urrlkit.pretext.common import grouped_forward, resolve_bn_groups, stream_seed
from urrlkit.pretext.losses import info_nce
from urrlkit.pretext.methods.moco_v2 import MoCoV2
from urrlkit.pretext.model import BuildContext, PretextModel, build_model
from urrlkit.pretext.workflow import build_pretext

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
import ddp_moco_step


def _moco(seed: int = 0, processes: int = 1, batch_per_process: int | None = None, **kw: object) -> PretextModel:
    torch.manual_seed(0)
    settings = MoCoV2(queue_size=16, momentum=0.9, temperature=0.2, head_dim=8, head_hidden=16, **kw)
    return build_model(settings, build_encoder("resnet10", small_stem=True, width=4),
                       BuildContext(num_samples=0, seed=seed, processes=processes,
                                    batch_per_process=batch_per_process))


def _keys(m: PretextModel, x: torch.Tensor, groups: int) -> torch.Tensor:
    """The key embeddings MoCo's forward computes (shuffle-BN over `groups`), without the momentum update."""
    p = m.parts
    return shuffled_keys(lambda t: p["head_k"](grouped_forward(p["encoder_k"], t, groups)), x, groups,
                         m.part("shuffle", RandomStream).gen)


def test_queue_is_normalised_and_enqueue_wraps() -> None:
    queue = _moco().part("queue", Queue)
    assert torch.allclose(queue.queue.norm(dim=0), torch.ones(16), atol=1e-5)
    keys = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    for _ in range(4):
        queue.enqueue(keys)
    assert int(queue.queue_ptr) == 0
    assert torch.allclose(queue.queue[:, 12:16], keys.T)
    with pytest.raises(ValueError, match="multiple"):
        queue.enqueue(torch.randn(3, 8))


def test_forward_updates_the_key_encoder_by_momentum_first() -> None:
    m = _moco()
    q0 = next(m.encoder.parameters()).detach().clone()
    k0 = next(m.parts["encoder_k"].parameters()).detach().clone()
    with torch.no_grad():
        next(m.encoder.parameters()).add_(1.0)
    m([torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)], torch.arange(4))
    k = next(m.parts["encoder_k"].parameters())
    assert torch.allclose(k, 0.9 * k0 + 0.1 * (q0 + 1.0), atol=1e-6)


def test_key_encoder_gets_no_gradient_and_loss_is_finite() -> None:
    m = _moco()
    x = torch.rand(4, 3, 16, 16)
    out = m([x, x.flip(-1)], torch.arange(4))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(p.grad is None for p in m.parts["encoder_k"].parameters())
    assert any(p.grad is not None for p in m.encoder.parameters())
    assert out.features is not None and out.features.shape == (4, m.encoder.feature_dim)


def test_the_moco_loss_is_eq1_info_nce_on_its_query_key_and_queue() -> None:
    m = _moco(bn_groups=1)
    x0, x1 = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    q = F.normalize(m.parts["head_q"](m.encoder(x0)), dim=1)
    queue = m.part("queue", Queue).queue.clone()
    with torch.no_grad():  # forward updates the key encoder before it embeds the keys
        for pk, pq in zip([*m.parts["encoder_k"].parameters(), *m.parts["head_k"].parameters()],
                          [*m.encoder.parameters(), *m.parts["head_q"].parameters()], strict=True):
            pk.mul_(0.9).add_(pq, alpha=0.1)
        k = _keys(m, x1, 1)
    m2 = _moco(bn_groups=1)  # a fresh MoCo with the same seeded weights, queue and key encoder
    out = m2([x0, x1], torch.arange(4))
    assert torch.equal(out.loss, info_nce(q.float(), k.float(), queue.float(), 0.2))


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
    with torch.no_grad():
        assert torch.allclose(_keys(m, x, 2), _keys(m, x, 1), atol=1e-5)


def test_two_processes_match_single_process_maths(tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    proc = subprocess.run([sys.executable, str(Path(ddp_moco_step.__file__)), str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp = load_file(str(out))
    model, opt = ddp_moco_step.make(groups=2)
    xq, xk = ddp_moco_step.data()
    for _ in range(2):
        out = model([xq, xk], torch.arange(len(xq)))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    single = ddp_moco_step.state(model)
    assert set(single) == set(ddp)
    # BN running statistics are per-device state (DDP saves rank 0's copy, which has seen only its half), so
    # they legitimately differ; every weight, the queue and the pointer must agree.
    compared = [k for k in single if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert any(k == "parts.queue.queue" for k in compared)
    for key in compared:
        value = single[key]
        assert torch.allclose(value.float(), ddp[key].float(), atol=2e-5, rtol=1e-4), key
    assert int(ddp["parts.queue.queue_ptr"]) == 16  # two global batches of 8 enqueued


# ------------------------------------------------------------------------------ shuffle-BN groups and seed


def test_auto_bn_groups_emulate_eight_devices() -> None:
    assert [resolve_bn_groups("auto", p) for p in (1, 2, 4, 8, 16)] == [8, 4, 2, 1, 1]
    assert [resolve_bn_groups(g, p) for g, p in ((1, 1), (3, 1), (2, 4))] == [1, 3, 2]  # integers stay
    with pytest.raises(RecipeError, match=r"^pretext.bn_groups = 'auto' .* 3 processes"):
        resolve_bn_groups("auto", 3)
    assert MoCoV2(bn_groups="auto").groups(BuildContext(num_samples=0, processes=1)) == 8
    assert MoCoV2(bn_groups="auto").groups(BuildContext(num_samples=0, processes=2)) == 4


def test_groups_must_divide_the_per_process_batch() -> None:
    with pytest.raises(RecipeError) as err:
        _moco(bn_groups="auto", processes=2, batch_per_process=6)
    assert str(err.value).startswith("pretext.bn_groups = 'auto' → 4 per process does not divide the per-process "
                                     "batch of 6 images")
    with pytest.raises(RecipeError, match=r"^pretext.bn_groups = 3 does not divide .* 8 images"):
        _moco(bn_groups=3, processes=1, batch_per_process=8)
    _moco(bn_groups="auto", processes=1, batch_per_process=256)


def test_shuffle_permutation_comes_from_the_run_seed() -> None:
    def first_perm(seed: int, queue: int = 16) -> torch.Tensor:
        torch.manual_seed(0)
        m = build_model(MoCoV2(queue_size=queue, head_dim=8, head_hidden=16),
                        build_encoder("resnet10", small_stem=True, width=4), BuildContext(num_samples=0, seed=seed))
        return torch.randperm(64, generator=m.part("shuffle", RandomStream).gen)

    expected = torch.randperm(64, generator=torch.Generator().manual_seed(stream_seed(5, "moco-shuffle-bn")))
    assert torch.equal(first_perm(5), expected)
    assert torch.equal(first_perm(5), first_perm(5, queue=32))  # no longer tied to the queue size
    assert not torch.equal(first_perm(5), first_perm(6))
    # a stream of its own: not the augmentation generator's (seeded run.seed · 1000 + rank)
    assert not torch.equal(first_perm(0), torch.randperm(64, generator=torch.Generator().manual_seed(0)))
    m = _moco(seed=5)
    gen = m.part("shuffle", RandomStream).gen
    assert any(g is gen for g in module_generators(m))  # saved and restored with checkpoints


def _bn(x: torch.Tensor) -> torch.Tensor:
    mean, var = x.mean(0), x.var(0, unbiased=False)
    return (x - mean) / torch.sqrt(var + 1e-5)


def test_keys_are_shuffled_across_groups_before_group_bn() -> None:
    """A BN-only key encoder: each key is normalised by the statistics of the random group it was shuffled
    into, then returned in its original place, exactly as _batch_shuffle_ddp / _batch_unshuffle_ddp do."""
    m = _moco(bn_groups=2, seed=3)
    m.parts["encoder_k"], m.parts["head_k"] = torch.nn.BatchNorm1d(4, affine=False), torch.nn.Identity()
    g = torch.Generator().manual_seed(7)
    x = torch.cat([torch.randn(4, 4, generator=g), torch.randn(4, 4, generator=g) + 10])  # two clusters
    gen = torch.Generator().manual_seed(stream_seed(3, "moco-shuffle-bn"))
    perm = torch.randperm(8, generator=gen)
    assert set(perm[:4].tolist()) != {0, 1, 2, 3}  # the groups mix the clusters
    expected = F.normalize(torch.cat([_bn(x[perm[:4]]), _bn(x[perm[4:]])])[torch.argsort(perm)], dim=1)
    keys = _keys(m, x, 2)
    assert torch.allclose(keys, expected, atol=1e-5)
    unshuffled = F.normalize(torch.cat([_bn(x[:4]), _bn(x[4:])]), dim=1)
    assert (keys - unshuffled).abs().max() > 0.1  # grouping without the shuffle would have given this
    perm = torch.randperm(8, generator=gen)  # the next step: the next permutation of the same stream
    expected = F.normalize(torch.cat([_bn(x[perm[:4]]), _bn(x[perm[4:]])])[torch.argsort(perm)], dim=1)
    assert torch.allclose(_keys(m, x, 2), expected, atol=1e-5)


def test_warning_when_there_is_no_shuffle_at_all() -> None:
    def lines(groups: int | str, processes: int) -> list[str]:
        ctx = BuildContext(num_samples=0, processes=processes)
        return MoCoV2(bn_groups=groups).warnings(_moco(), ctx)

    (line,) = lines(1, 1)
    assert line.startswith("warning: MoCo without shuffle-BN") and "\n" not in line
    assert lines(2, 1) == [] and lines(1, 2) == [] and lines("auto", 1) == []


def test_engine_builds_moco_from_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    """build_pretext: run.seed and the process layout reach MoCo; the warning is printed; errors are one line."""
    acc = Accelerator(cpu=True)
    tiny = {"model": {"backbone": "resnet10", "width": 4}, "pretext": {"queue_size": 16, "head_dim": 8},
            "data": {"batch_size": 16}, "run": {"seed": 9}}
    one = validate_dict({**tiny, "pretext": {**tiny["pretext"], "bn_groups": 1}})
    m = build_pretext(one, 64, acc)
    assert m.ctx.processes == 1 and m.ctx.seed == 9 and m.ctx.batch_per_process == 16
    assert "warning: MoCo without shuffle-BN" in capsys.readouterr().err
    expected = torch.randperm(16, generator=torch.Generator().manual_seed(stream_seed(9, "moco-shuffle-bn")))
    assert torch.equal(torch.randperm(16, generator=m.part("shuffle", RandomStream).gen), expected)
    auto = validate_dict({**tiny, "pretext": {**tiny["pretext"], "bn_groups": "auto"}})
    build_pretext(auto, 64, acc)
    assert "warning" not in capsys.readouterr().err
    odd = validate_dict({**tiny, "pretext": {**tiny["pretext"], "bn_groups": "auto", "queue_size": 48},
                         "data": {"batch_size": 12}})
    with pytest.raises(RecipeError, match=r"^pretext.bn_groups = 'auto' → 8 per process does not divide"):
        build_pretext(odd, 64, acc)
    # An integer that cannot divide the (global) batch is refused by validation already, for the memory-bank
    # pretexts too (they forward in BN groups as well); the per-process batch is checked at launch.
    with pytest.raises(RecipeError, match=r"pretext.bn_groups: 8 does not divide data.batch_size = 12"):
        validate_dict({**odd.to_dict(), "pretext": {"method": "instdis", "head_dim": 8, "bn_groups": 8}})
