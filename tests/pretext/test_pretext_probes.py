"""Online monitors during pretraining (pretext/probes.py): the linear probe on detached features and the kNN
monitor — exact on hand-made inputs, without effect on the encoder, logged per epoch, resumed bit-identically,
and absent when off."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset, Subset

from urrlkit.config import load
from urrlkit.data import ArrayDataset, dataset_labels
from urrlkit.errors import UrrlError
from urrlkit.finetune.linear import knn_top1
from urrlkit.pretext.common import grouped_forward
from urrlkit.pretext.probes import (
    EpochMonitor,
    ProbedPretext,
    knn_due,
    knn_monitor,
    monitor_subset,
    new_probe,
    probe_param_groups,
)
from urrlkit.pretext.workflow import build_pretext, pretrain

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "data.train_limit=128", "data.test_limit=64", "data.batch_size=32", "model.backbone='resnet10'",
    "model.width=4", "pretext.queue_size=64", "pretext.head_dim=16", "pretext.bn_groups=2",
    "optim.epochs=2", "optim.checkpoint_every=3", "optim.log_every=2", "run.trackers=[]",
]
ON = ("monitor.linear=true", "monitor.knn=true", "monitor.knn_k=20", "monitor.knn_train_images=100")
OFF = ("monitor.linear=false", "monitor.knn=false")


def tiny(tmp_path: Path, name: str, *extra: str) -> object:
    return load(ROOT / "recipes" / "quickstart.toml",
                [*TINY, f"run.output_dir='{tmp_path}'", f"run.name='{name}'", *extra])


def records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def latest(run: Path) -> Path:
    ckpts = run / "checkpoints"
    return ckpts / (ckpts / "latest").read_text().strip()


# ---------------------------------------------------------------------------------------------- kNN


# Unit vectors (0°, ±53.13°, 180°) of classes 0, 1, 1, 2, and three test images: the first and the third have
# one close neighbour of their class and two farther ones of class 1 among their 3 nearest.
TRAIN_F = torch.tensor([[100.0, 0.0], [60.0, 80.0], [60.0, -80.0], [-100.0, 0.0]])
TRAIN_Y = torch.tensor([0, 1, 1, 2])
TEST_F = torch.tensor([[100.0, 0.0], [0.0, 100.0], [-100.0, 10.0]])
TEST_Y = torch.tensor([0, 1, 2])


def test_weighted_knn_on_a_hand_made_example() -> None:
    # τ = 0.07: exp(sim/τ) makes the closest neighbour outvote two farther ones, e.g. test 0: exp(1/0.07) for
    # class 0 against 2·exp(0.6/0.07) for class 1 → all three right.
    assert knn_top1(TRAIN_F, TRAIN_Y, TEST_F, TEST_Y, k=3, temperature=0.07) == 100.0
    # τ = 100: every weight ≈ 1, a majority vote: tests 0 and 2 go to class 1 (1.01 vs 2.01, 1.01 vs 1.99).
    assert knn_top1(TRAIN_F, TRAIN_Y, TEST_F, TEST_Y, k=3, temperature=100.0) == 100.0 / 3
    assert knn_top1(TRAIN_F, TRAIN_Y, TEST_F, TEST_Y, k=1, temperature=100.0) == 100.0  # nearest neighbour
    # k beyond the 4 training images: all four vote, class 1 has two of them and wins every test image.
    assert knn_top1(TRAIN_F, TRAIN_Y, TEST_F, TEST_Y, k=200, temperature=100.0) == 100.0 / 3


class FirstTwoChannels(nn.Module):
    """Features = the pixel values of channels 0 and 1 minus 128 (1×1 images), as the example's vectors."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)  # to check that the monitor leaves train mode and BN statistics alone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.bn(x)
        return x[:, :2, 0, 0] * 255 - 128


def pixels(features: torch.Tensor, labels: torch.Tensor) -> ArrayDataset:
    img = torch.full((features.shape[0], 1, 1, 3), 128, dtype=torch.uint8)
    img[:, 0, 0, :2] = (features + 128).to(torch.uint8)
    return ArrayDataset(img.numpy(), labels.numpy(), classes=None)


def test_knn_monitor_reads_images_and_changes_nothing() -> None:
    enc = FirstTwoChannels().train()
    train, test = pixels(TRAIN_F, TRAIN_Y), pixels(TEST_F, TEST_Y)
    rng, stats = torch.get_rng_state(), enc.bn.running_mean.clone()
    assert knn_monitor(enc, train, test, 1, k=3, temperature=0.07, batch_size=2, device="cpu") == 100.0
    assert knn_monitor(enc, train, test, 1, k=3, temperature=100.0, batch_size=2, device="cpu") == 100.0 / 3
    assert torch.equal(torch.get_rng_state(), rng)  # the DataLoader's seed draw is undone
    assert enc.training and torch.equal(enc.bn.running_mean, stats)


def test_knn_runs_every_n_epochs_and_after_the_last() -> None:
    assert [e for e in range(10) if knn_due(e, 3, 10)] == [2, 5, 8, 9]
    assert [e for e in range(4) if knn_due(e, 1, 4)] == [0, 1, 2, 3]


def test_monitor_subset_is_fixed_and_bounded() -> None:
    ds = pixels(torch.zeros(50, 2), torch.arange(50) % 3)
    sub = monitor_subset(ds, 10)
    assert isinstance(sub, Subset) and len(sub) == 10 and sub.indices == sorted(sub.indices)
    assert monitor_subset(ds, 10).indices == sub.indices
    assert monitor_subset(ds, 50) is ds and monitor_subset(ds, 0) is ds


# ---------------------------------------------------------------------------------------------- labels and probe


class Unlabelled(Dataset):
    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.zeros(3, 2, 2)


class TorchvisionLike(Dataset):
    """A wrapper over a set keeping its labels in `_labels` (as torchvision's Flowers102 does)."""

    def __init__(self) -> None:
        self.ds = type("Inner", (Dataset,), {"__len__": lambda s: 3, "_labels": [2, 0, 1]})()

    def __len__(self) -> int:
        return 3


def test_labels_come_from_the_data_set_without_decoding() -> None:
    ds = pixels(torch.zeros(5, 2), torch.tensor([4, 3, 2, 1, 0]))
    assert dataset_labels(ds).tolist() == [4, 3, 2, 1, 0]
    assert dataset_labels(Subset(ds, [1, 3])).tolist() == [3, 1]
    assert dataset_labels(TorchvisionLike()).tolist() == [2, 0, 1]
    assert dataset_labels(Unlabelled()) is None


def test_probe_is_seeded_apart_from_the_global_stream() -> None:
    rng = torch.get_rng_state()
    a, b = new_probe(8, 3, seed=0), new_probe(8, 3, seed=0)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(a.weight, b.weight) and not torch.equal(a.weight, new_probe(8, 3, seed=1).weight)
    assert torch.equal(a.bias, torch.zeros(3)) and 0.005 < float(a.weight.detach().std()) < 0.02


def test_probe_param_group_has_its_lr_and_no_weight_decay() -> None:
    probe = new_probe(4, 2, 0)
    params = [nn.Parameter(torch.zeros(2))]
    groups = probe_param_groups(params, probe, lr=0.06, probe_lr=0.3)
    assert groups[0] == {"params": params}
    assert groups[1]["weight_decay"] == 0.0 and groups[1]["lr_scale"] == pytest.approx(5.0)
    assert groups[1]["params"] == [probe.weight, probe.bias]


@pytest.mark.parametrize("exclude_norm_bias", [False, True])
def test_probe_takes_plain_steps_under_lars(exclude_norm_bias: bool) -> None:
    """LARS's trust ratio (0.001·‖w‖/‖g‖) would keep a probe started near 0 at chance; its first step is
    -lr·grad exactly, while the pretext's weights are layer-adapted."""
    from urrlkit.engine.optim import build_optimizer

    torch.manual_seed(0)
    probe, body = new_probe(4, 3, 0), nn.Linear(4, 4)
    groups = probe_param_groups(list(body.parameters()), probe, lr=0.5, probe_lr=0.5)
    opt = build_optimizer(nn.ModuleList([body, probe]), "lars", 0.5, 0.9, 1e-6, params=groups,
                          exclude_norm_bias=exclude_norm_bias)
    before, body_before = probe.weight.detach().clone(), body.weight.detach().clone()
    F.cross_entropy(probe(body(torch.randn(16, 4))), torch.arange(16) % 3).backward()
    grad, body_grad = probe.weight.grad.clone(), body.weight.grad.clone()
    opt.step()
    torch.testing.assert_close(probe.weight.detach(), before - 0.5 * grad)
    assert not torch.allclose(body.weight.detach(), body_before - 0.5 * body_grad)


@pytest.mark.parametrize("method", ["moco_v2", "instdis", "pirl"])
def test_probe_sees_the_query_features_and_leaves_the_encoder_gradient(tmp_path: Path, method: str) -> None:
    r = tiny(tmp_path, "x", f"pretext.method='{method}'", *(["pretext.jigsaw_grid=2"] if method == "pirl" else []))
    torch.manual_seed(0)
    plain = build_pretext(r, 64)
    probed_pretext = copy.deepcopy(plain)
    labels = torch.arange(64) % 10
    probed = ProbedPretext(probed_pretext, new_probe(plain.encoder.feature_dim, 10, 0), labels)
    g = torch.Generator().manual_seed(1)
    views = [torch.rand(8, 3, 32, 32, generator=g) for _ in range(2)]
    index = torch.arange(8) * 3
    expected_feats = grouped_forward(copy.deepcopy(plain.encoder), views[0], plain_groups(plain)).detach()

    loss_a = plain(views, index).loss
    out_b = probed(views, index)
    loss_b, stats = out_b.loss, out_b.stats
    assert torch.equal(loss_a, loss_b)  # the value is the pretext's loss, exactly
    expected_ce = F.cross_entropy(probed.probe(expected_feats), labels[index])
    assert torch.allclose(stats["probe_loss"], expected_ce, rtol=1e-6, atol=1e-7)
    loss_a.backward()
    loss_b.backward()
    for (name, pa), pb in zip(plain.encoder.named_parameters(), probed.encoder.parameters(), strict=True):
        assert torch.equal(pa.grad, pb.grad), name
    assert probed.probe.weight.grad is not None and probed.probe.weight.grad.abs().sum() > 0
    assert int(probed.seen) == 8
    top1 = probed.epoch_top1()
    assert 0.0 <= top1 <= 100.0 and int(probed.seen) == 0 and int(probed.correct) == 0
    assert EpochMonitor(probed, None, 1, 2, True)(0) == {"probe_top1": 0.0}  # counts reset, nothing seen
    assert not probed.encoder._forward_hooks  # the features come with the method's output, not from a hook


def plain_groups(pretext: nn.Module) -> int:
    return int(pretext.method.groups(pretext.ctx))  # type: ignore[union-attr, operator]


# ---------------------------------------------------------------------------------------------- in pretraining


def test_paper_recipes_have_the_monitors_off() -> None:
    for path in (ROOT / "recipes" / "paper").rglob("*.toml"):
        r = load(path)
        assert not r.monitor.linear and not r.monitor.knn, path
    q = load(ROOT / "recipes" / "quickstart.toml")
    assert q.monitor.linear and q.monitor.knn


def test_monitors_are_logged_per_epoch_and_leave_the_encoder_alone(tmp_path: Path) -> None:
    pretrain(tiny(tmp_path, "on", *ON))
    pretrain(tiny(tmp_path, "off", *OFF))
    on, off = tmp_path / "on", tmp_path / "off"
    # Bit-identical encoders: the probe trains on detached features from its own random stream, the kNN
    # monitor runs in eval mode and restores the random streams.
    a, b = load_file(str(on / "model" / "model.safetensors")), load_file(str(off / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ends = [x for x in records(on) if "probe_top1" in x]
    assert [x["epoch"] for x in ends] == [0, 1]
    assert all(x["stage"] == "pretrain" and 0 <= x["probe_top1"] <= 100 and 0 <= x["knn_top1"] <= 100
               for x in ends)
    steps = [x for x in records(on) if "loss" in x]
    assert steps and all("probe_loss" in x for x in steps)
    # Off: no extra keys in the metrics, no extra parameters or state in the checkpoint.
    assert not any({"probe_top1", "knn_top1", "probe_loss"} & set(x) for x in records(off))
    ck_on, ck_off = load_file(str(latest(on) / "model.safetensors")), load_file(str(latest(off) / "model.safetensors"))
    assert set(ck_off) == {k.removeprefix("pretext.") for k in ck_on if not k.startswith("probe.")}
    assert {k for k in ck_on if k.startswith("probe.")} == {"probe.weight", "probe.bias"}
    assert all(torch.equal(ck_off[k.removeprefix("pretext.")], v) for k, v in ck_on.items()
               if k.startswith("pretext."))


def test_resume_with_the_probe_is_bit_identical(tmp_path: Path) -> None:
    pretrain(tiny(tmp_path, "full", *ON))
    cut = tiny(tmp_path, "cut", *ON)
    pretrain(cut, stop_after=5)  # 4 steps/epoch: stops mid-epoch 2, after the checkpoint at step 3
    pretrain(cut, resume=True)
    full, resumed = tmp_path / "full", tmp_path / "cut"
    a, b = load_file(str(latest(full) / "model.safetensors")), load_file(str(latest(resumed) / "model.safetensors"))
    assert a.keys() == b.keys() and "probe.weight" in a
    assert all(torch.equal(a[k], b[k]) for k in a)  # encoder, heads, queue and the probe
    # The epoch counted across the stop: the resumed run's epoch-1 numbers are the uninterrupted run's.
    last = [[x for x in records(run) if x.get("epoch") == 1 and "probe_top1" in x][-1] for run in (full, resumed)]
    assert last[0]["probe_top1"] == last[1]["probe_top1"] and last[0]["knn_top1"] == last[1]["knn_top1"]


@pytest.mark.slow
def test_two_processes_log_the_monitors(tmp_path: Path) -> None:
    """A real 2-process (gloo) run: the probe's top-1 is summed over both processes, the kNN is measured by the
    main one alone, and neither blocks the other."""
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "urrlkit.cli", "pretrain",
            str(ROOT / "recipes" / "quickstart.toml"), "--no-linear-eval"]
    for s in [*TINY, *ON, f"run.output_dir='{tmp_path}'", "run.name='ddp'"]:
        args += ["--set", s]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ends = [x for x in records(tmp_path / "ddp") if "probe_top1" in x]
    assert [x["epoch"] for x in ends] == [0, 1] and all(0 <= x["knn_top1"] <= 100 for x in ends)
    # 128 images per epoch over both processes: the top-1 is a multiple of 100/128.
    assert all((x["probe_top1"] * 128 / 100) == pytest.approx(round(x["probe_top1"] * 128 / 100)) for x in ends)
    assert "pretrain epoch 1 end probe_top1" in proc.stdout + proc.stderr


def test_resume_may_change_the_knn_monitor_not_the_probe(tmp_path: Path) -> None:
    pretrain(tiny(tmp_path, "r", *ON), stop_after=5)
    with pytest.raises(UrrlError, match=r"monitor\.linear"):
        pretrain(tiny(tmp_path, "r", *ON, "monitor.linear=false"), resume=True)  # the checkpoint holds a probe
    pretrain(tiny(tmp_path, "r", *ON, "monitor.knn=false"), resume=True)  # measurement only: allowed
    last = [x for x in records(tmp_path / "r") if "probe_top1" in x][-1]
    assert last["epoch"] == 1 and "knn_top1" not in last


def test_a_data_set_without_labels_turns_the_monitors_off(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from accelerate import Accelerator

    from urrlkit.pretext.workflow import build_monitors

    r = tiny(tmp_path, "u", *ON)
    torch.manual_seed(0)
    assert build_monitors(r, build_pretext(r, 3), Unlabelled(), Accelerator(cpu=True)) == (None, None)
    assert "'cifar10-sample' has no labels; online probe and kNN monitor off" in capsys.readouterr().err


def test_a_data_set_without_a_test_split_pretrains_without_the_knn(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    from accelerate import Accelerator
    from paper_trees import imagenet_tree

    from urrlkit.data import from_config
    from urrlkit.pretext.workflow import build_monitors

    root = imagenet_tree(tmp_path / "tree", classes=2, train_per_class=4, val_per_class=0)
    r = tiny(tmp_path, "t", *ON, f"data.root='{root}'", "data.dataset='imagefolder'", "data.image_size=64",
             "data.batch_size=8", "data.train_limit=8", "pretext.queue_size=16")
    torch.manual_seed(0)
    probed, knn = build_monitors(r, build_pretext(r, 8), from_config(r.data, "train"), Accelerator(cpu=True))
    assert isinstance(probed, ProbedPretext) and probed.probe.out_features == 2 and knn is None
    assert "monitor: kNN monitor off, no test split" in capsys.readouterr().err
