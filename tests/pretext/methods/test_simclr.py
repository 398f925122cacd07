"""SimCLR as a method plugin (urrlkit/pretext/methods/simclr.py): the step equals NT-Xent of the building blocks,
and NT-Xent written out anchor by anchor; negatives from every process (two real gloo processes against one
process over the concatenated batch); recipe errors name the field; pretraining on the bundled sample."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from urrlkit.config import validate_dict
from urrlkit.engine.progress import Progress
from urrlkit.errors import RecipeError
from urrlkit.models import build_encoder
from urrlkit.pretext.heads import ScaleBatchNorm1d
from urrlkit.pretext.losses import nt_xent
from urrlkit.pretext.methods.simclr import SimCLR
from urrlkit.pretext.model import BuildContext, PretextModel, build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "helpers"))
import ddp_simclr_step
import sample_pretrain

B, SIZE = 6, 16


def _model(**kw: object) -> PretextModel:
    torch.manual_seed(0)
    settings = SimCLR(**{"head_dim": 8, "temperature": 0.5, **kw})  # type: ignore[arg-type]
    return build_model(settings, build_encoder("resnet10", small_stem=True, width=4), BuildContext(num_samples=0))


def _views() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.rand(B, 3, SIZE, SIZE, generator=g), torch.rand(B, 3, SIZE, SIZE, generator=g)]


def _explicit_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """SimCLR's Algorithm 1 written out: for each of the 2N views, −log of its positive's share of the softmax
    over the 2N − 1 other views; mean over the 2N anchors."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z1.shape[0]
    total = z.new_zeros(())
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        others = [j for j in range(2 * n) if j != i]
        logits = torch.stack([z[i] @ z[j] / t for j in others])
        total = total - (z[i] @ z[pos] / t - torch.logsumexp(logits, 0))
    return total / (2 * n)


def test_head_is_simclrs_bn_projection_head() -> None:
    m = _model()
    head = m.parts["head"]
    linears = [x for x in head if isinstance(x, torch.nn.Linear)]
    assert len(linears) == 3 and all(x.bias is None for x in linears)  # --num_proj_layers 3, no biases
    assert linears[0].in_features == linears[0].out_features == m.encoder.feature_dim and linears[-1].out_features == 8
    assert isinstance(head[-1], ScaleBatchNorm1d) and head[-1].bias is None  # the last BN: scale, no shift
    assert abs(float(linears[0].weight.detach().std()) - 0.01) < 0.002  # N(0, 0.01) kernels
    assert _model(head_layers=2, head_hidden=32).parts["head"][0].out_features == 32


def test_forward_equals_the_building_blocks_and_algorithm_1() -> None:
    m = _model()
    views = _views()
    out = m(views, torch.arange(B), Progress(0, 10, 0, 1))
    assert out.features is not None and out.embeddings is not None
    assert out.features.shape == (B, m.encoder.feature_dim) and out.embeddings[0].shape == (B, 8)
    with torch.no_grad():
        feats = m.encoder(torch.cat(views))  # both views in one batch, BN over the 2N images
        z1, z2 = m.parts["head"](feats).split(B)
    assert torch.allclose(out.features, feats[:B], atol=1e-6)
    assert torch.allclose(out.embeddings[0], z1, atol=1e-6) and torch.allclose(out.embeddings[1], z2, atol=1e-6)
    by_hand = 2 * nt_xent(z1, z2, 0.5)  # objective.py: loss_a + loss_b
    assert torch.allclose(out.loss, by_hand, atol=1e-6)
    assert torch.allclose(out.loss.double(), 2 * _explicit_nt_xent(z1, z2, 0.5), atol=1e-5)
    mean = _model(loss_sum=False)(views, torch.arange(B))
    assert torch.allclose(mean.loss, out.loss / 2, atol=1e-6)


def test_chance_loss_is_the_loss_of_a_collapsed_encoder() -> None:
    s = SimCLR()
    assert s.chance_loss(4096) == pytest.approx(2 * math.log(8191))
    assert SimCLR(loss_sum=False).chance_loss(256) == pytest.approx(math.log(511))
    same = torch.ones(B, 8)  # every view embedded alike: each anchor's 2N − 1 candidates score the same
    assert float(2 * nt_xent(same, same, 0.1)) == pytest.approx(s.chance_loss(B), rel=1e-6)


def test_gradients_reach_the_encoder_and_the_head() -> None:
    m = _model()
    m(_views(), torch.arange(B)).loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_two_processes_match_one_process_over_the_global_batch(tmp_path: Path) -> None:
    """Negatives gathered from both processes, with their gradients: two gloo processes (4 images each) equal one
    process computing NT-Xent over all 8 images' 16 views, each half through the network on its own."""
    out = tmp_path / "ddp.safetensors"
    proc = subprocess.run([sys.executable, str(Path(ddp_simclr_step.__file__)), str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp = load_file(str(out))
    model, opt = ddp_simclr_step.make()
    v1, v2 = ddp_simclr_step.data()
    half = ddp_simclr_step.BATCH // 2
    losses = []
    for _ in range(ddp_simclr_step.STEPS):
        z1, z2 = [], []
        for r in range(2):  # each process's images through the network on their own (its BN statistics)
            sl = slice(r * half, (r + 1) * half)
            a, b = model.parts["head"](model.encoder(torch.cat([v1[sl], v2[sl]]))).split(half)
            z1.append(a)
            z2.append(b)
        loss = 2 * nt_xent(torch.cat(z1), torch.cat(z2), ddp_simclr_step.TEMPERATURE)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach())
    assert torch.allclose(torch.stack(losses), ddp["losses"], atol=1e-5)  # mean of the two processes' shares
    single = ddp_simclr_step.state(model)
    # BN running statistics are per-process state (rank 0's copy saw its half only); every weight must agree.
    compared = [k for k in single if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert any(k.startswith("parts.head") for k in compared)
    for key in compared:
        assert torch.allclose(single[key], ddp[key], atol=2e-5, rtol=1e-4), key


# ----------------------------------------------------------------------------------------- the recipe


def test_p_mixes_augmix_with_simclrs_own_family() -> None:
    r = validate_dict({"pretext": {"method": "simclr", "p": 0.5}})
    assert [(f.name, f.weight) for f in r.pretext.family_weights()] == [("augmix_allop", 0.5), ("simclr", 0.5)]
    plain = validate_dict({"pretext": {"method": "simclr"}}).pretext
    assert [f.name for f in plain.family_weights()] == ["simclr"]
    assert plain.view_groups()[0].count == 2


@pytest.mark.parametrize(("pretext", "pattern"), [
    ({"views": 3}, r"pretext\.views.*SimCLR contrasts exactly 2 views"),
    ({"temperature": 0}, r"pretext\.temperature"),
    ({"head_layers": 0}, r"pretext\.head_layers"),
    ({"queue_size": 4096}, r"unknown key pretext\.queue_size for method 'simclr'"),  # MoCo's field
    ({"loss_sum": "maybe"}, r"pretext\.loss_sum"),
])
def test_bad_fields_are_one_line_errors(pretext: dict, pattern: str) -> None:
    with pytest.raises(RecipeError, match=pattern) as err:
        validate_dict({"pretext": {"method": "simclr", **pretext}})
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------- pretraining the sample

def test_cli_pretraining_on_the_sample_beats_the_untrained_encoder(tmp_path: Path) -> None:
    rows = sample_pretrain.learning_rows("simclr", tmp_path)
    knn = [r["knn_top1"] for r in rows if "knn_top1" in r]
    assert knn, "the sample recipe's kNN monitor logged nothing"
    assert rows[0]["stage"] == "pretrain-start" and rows[-1]["stage"] == "pretrain-done"
    assert set(rows[-1]["family_fraction"]) == {"augmix_allop", "simclr"}
    before = sample_pretrain.untrained_knn("simclr")
    assert knn[-1] > before + 2, (knn, before)


def test_stop_and_resume_is_bit_identical(tmp_path: Path) -> None:
    sample_pretrain.stop_and_resume_equal_a_full_run("simclr", tmp_path)
