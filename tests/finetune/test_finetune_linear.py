"""Linear evaluation (streamed probe training and test top-1, resume) and the kNN monitor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset
from typer.testing import CliRunner

from urrlkit import metrics
from urrlkit.cli import app
from urrlkit.config import LinearEvalConfig, Recipe, load
from urrlkit.data import DataRequest
from urrlkit.finetune.linear import LinearProbe, knn_top1, run_linear_eval, train_head_on_features
from urrlkit.models import Encoder, build_encoder
from urrlkit.registry import DATASETS

ROOT = Path(__file__).resolve().parents[2]


def test_knn_weighted_vote_by_hand() -> None:
    train_f = torch.tensor([[0.8, 0.6], [1.0, 0.0], [0.95, -0.31]])
    train_y = torch.tensor([1, 0, 0])
    test_f = torch.tensor([[0.8, 0.6]])
    # cosines 1.0, 0.8, 0.574 → weights e^(s/0.07): class 1 ≈ e^14.3 outweighs class 0 ≈ e^11.4 + e^8.2,
    # although a plain majority of the 3 neighbours would say class 0.
    assert knn_top1(train_f, train_y, test_f, torch.tensor([1]), k=3) == 100.0
    assert knn_top1(train_f, train_y, test_f, torch.tensor([1]), k=3, temperature=100.0) == 0.0  # ≈ majority


def test_head_on_separable_features_reaches_full_accuracy() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 4
    feats = torch.nn.functional.one_hot(y, 8).float() * 3 + 0.1 * torch.randn(200, 8, generator=g)
    head = train_head_on_features(feats, y, 4, LinearEvalConfig(epochs=20, lr=0.5, batch_size=32))
    assert (head(feats).argmax(1) == y).float().mean() == 1.0


def test_linear_probe_keeps_encoder_frozen_in_eval_mode() -> None:
    probe = LinearProbe(build_encoder("resnet10", small_stem=True, width=4), 3).train()
    assert not probe.encoder.training and probe.head.training
    assert all(not p.requires_grad for p in probe.encoder.parameters())


@pytest.mark.parametrize("augment", ["none", "crop_flip"])
def test_pretrain_then_linear_eval_via_cli(tmp_path: Path, augment: str) -> None:
    sets = ["data.train_limit=128", "data.test_limit=100", "data.batch_size=32", "model.width=4",
            "pretext.queue_size=64", "optim.epochs=1", "run.trackers=[]", f"run.output_dir='{tmp_path}'",
            "linear_eval.epochs=2", f"linear_eval.augment='{augment}'", "eval.suites=['clean','calibration']"]
    args = ["pretrain", str(ROOT / "recipes" / "quickstart.toml")]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    run = tmp_path / "quickstart"
    scores = json.loads((run / "linear" / "linear_eval.json").read_text())
    assert 0 <= scores["linear_top1"] <= 100 and 0 <= scores["knn_top1"] <= 100
    results = json.loads((run / "linear" / "eval" / "results.json").read_text())
    assert results["metrics"]["clean"]["top1"] == pytest.approx(scores["linear_top1"])
    assert json.loads((run / "linear" / "model" / "config.json").read_text())["kind"] == "classifier"


# --------------------------------------------------------------------------- streaming, no feature pass, resume

READS = {"train": 0, "test": 0}


class CountingReads(Dataset):
    """The bundled sample, counting every image read per split."""

    def __init__(self, ds: Dataset, split: str) -> None:
        self.ds, self.split, self.classes = ds, split, ds.classes  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        READS[self.split] += 1
        return self.ds[i]


def counting_sample(req: DataRequest) -> Dataset:
    return CountingReads(DATASETS.get("cifar10-sample")(req), req.split)


@pytest.fixture
def counting_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """'counting-sample' registered for one test only (other tests check the registry's exact contents)."""
    monkeypatch.setitem(DATASETS._items, "counting-sample", counting_sample)


TINY = ["data.train_limit=96", "data.test_limit=40", "data.batch_size=32", "model.width=4", "pretext.queue_size=64",
        "optim.epochs=1", "run.trackers=[]", "linear_eval.batch_size=32", "linear_eval.lr=0.5",
        "linear_eval.schedule='step'", "linear_eval.milestones=[1]", "eval.suites=[]"]


def _recipe(tmp_path: Path, *extra: str) -> Recipe:
    return load(ROOT / "recipes" / "quickstart.toml", [*TINY, f"run.output_dir='{tmp_path}'", *extra])


def _encoder(seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    return build_encoder("resnet10", small_stem=True, width=4)


@pytest.mark.parametrize(("knn_k", "reads_per_image"), [(0, 2), (5, 3)])
@pytest.mark.usefixtures("counting_registered")
def test_crop_flip_probe_streams_the_training_set(tmp_path: Path, knn_k: int, reads_per_image: int) -> None:
    """With crop_flip the probe trains through the DataLoader: each training image is read once per epoch, and
    once more only when the kNN monitor needs the whole split's features; the test images are read once (plus
    once for kNN)."""
    r = _recipe(tmp_path, "data.dataset='counting-sample'", "linear_eval.augment='crop_flip'",
                "linear_eval.epochs=2", f"linear_eval.knn_k={knn_k}")
    READS.update(train=0, test=0)
    result = run_linear_eval(r, _encoder(), out_dir=tmp_path / "linear")
    assert READS["train"] == 96 * reads_per_image
    assert READS["test"] == 40 * (2 if knn_k else 1)
    assert ("knn_top1" in result) == bool(knn_k)


def test_streamed_test_top1_equals_the_feature_based_number() -> None:
    """Top-1 streamed through the whole classifier equals the old path: features of the whole split, then the
    head."""
    from urrlkit.data import DataRequest, build
    from urrlkit.finetune.linear import extract_features, streaming_top1

    probe = LinearProbe(_encoder(1), 10).eval()
    with torch.no_grad():
        probe.head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
    ds = build("cifar10-sample", DataRequest(None, "test", 32, limit=200))
    feats, labels = extract_features(probe.encoder, ds, 32, batch_size=64)
    old = 100.0 * metrics.top1(probe.head(feats), labels)
    assert 10.0 < old < 100.0  # a non-trivial number, so equality means something
    assert streaming_top1(probe, ds, 32, batch_size=64) == old


def test_linear_stage_resumes_after_a_kill(tmp_path: Path) -> None:
    """`urrl pretrain --resume` after a kill during linear evaluation continues the probe from its checkpoint and
    ends with exactly the probe of an uninterrupted run."""
    from urrlkit.data import from_config
    from urrlkit.finetune.train import train_classifier
    from urrlkit.pretext.workflow import pretrain, run_pretrain

    sets = ["linear_eval.augment='crop_flip'", "linear_eval.epochs=2", "linear_eval.knn_k=0"]
    a = _recipe(tmp_path / "a", *sets)
    run_pretrain(a)
    b = _recipe(tmp_path / "b", *sets)
    encoder = pretrain(b)
    train = from_config(b.data, "train")
    torch.manual_seed(b.run.seed)
    probe = LinearProbe(encoder, len(train.classes))  # type: ignore[attr-defined]
    ckpts = b.run_dir / "linear" / "checkpoints"
    train_classifier(b, probe, train, b.linear_eval, ckpts, None, title="linear", stop_after=4)  # killed in epoch 2
    assert (ckpts / "latest").read_text().strip() == "step-00000003"  # the end of epoch 1
    run_pretrain(b, resume=True)
    wa, wb = (load_file(str(r.run_dir / "linear" / "model" / "model.safetensors")) for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    rows = [json.loads(x) for x in (b.run_dir / "linear" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("stage") == "linear"] == [3, 6]  # epoch 1 was not trained again
    sa, sb = (json.loads((r.run_dir / "linear" / "linear_eval.json").read_text()) for r in (a, b))
    assert sa == sb


@pytest.mark.slow
def test_two_processes_pretrain_then_train_the_probe_together(tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2 … urrl pretrain` with crop_flip linear evaluation: both processes train the
    probe (the global batch of 32 split in two: 4 steps per epoch over 128 images), the main one evaluates it."""
    import os
    import subprocess
    import sys

    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "urrlkit.cli", "pretrain",
            str(ROOT / "recipes" / "quickstart.toml")]
    for s in ["data.train_limit=128", "data.test_limit=64", "data.batch_size=32", "model.width=4",
              "pretext.queue_size=64", "pretext.head_dim=16", "pretext.bn_groups=1", "optim.epochs=1",
              "run.trackers=[]", f"run.output_dir='{tmp_path}'", "run.name='ddp'", "linear_eval.augment='crop_flip'",
              "linear_eval.epochs=2", "linear_eval.batch_size=32", "linear_eval.knn_k=0", "eval.suites=['clean']"]:
        args += ["--set", s]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lin = tmp_path / "ddp" / "linear"
    rows = [json.loads(x) for x in (lin / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("stage") == "linear"] == [4, 8]
    scores = json.loads((lin / "linear_eval.json").read_text())
    clean = json.loads((lin / "eval" / "results.json").read_text())["metrics"]["clean"]["top1"]
    assert clean == pytest.approx(scores["linear_top1"])
