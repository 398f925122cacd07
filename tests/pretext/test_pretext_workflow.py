"""The pretraining engine end to end on the bundled sample: outputs, exact resume (in-process and after a real
kill), NaN stop, no silent overwrite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from urrlkit.config import load
from urrlkit.errors import TrainingError, UrrlError
from urrlkit.pretext.workflow import pretrain

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "data.train_limit=128", "data.test_limit=64", "data.batch_size=32", "model.backbone='resnet10'",
    "model.width=4", "pretext.queue_size=64", "pretext.head_dim=16", "pretext.bn_groups=2",
    "optim.epochs=2", "optim.checkpoint_every=3", "optim.log_every=2", "run.trackers=[]",
]


def tiny(tmp_path: Path, name: str, *extra: str) -> object:
    return load(ROOT / "recipes" / "quickstart.toml",
                [*TINY, f"run.output_dir='{tmp_path}'", f"run.name='{name}'", *extra])


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def test_pretrain_writes_run_directory(tmp_path: Path) -> None:
    r = tiny(tmp_path, "a")
    pretrain(r)
    run = tmp_path / "a"
    assert (run / "recipe.toml").is_file()
    assert load(run / "recipe.toml").digest() == r.digest()
    cfg = json.loads((run / "model" / "config.json").read_text())
    assert cfg["kind"] == "encoder" and cfg["recipe_hash"] == r.digest()
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["stage"] == "pretrain-done"
    mix = lines[-1]["family_fraction"]
    assert set(mix) == {"augmix_allop", "moco_v2"} and abs(mix["moco_v2"] - 0.5) < 0.2
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in lines if "loss" in x)
    with pytest.raises(UrrlError, match="--resume"):
        pretrain(r)  # never silently overwrites an existing run


@pytest.mark.parametrize("method", ["moco_v2", "instdis", "pirl"])
def test_resume_mid_epoch_is_bit_identical(tmp_path: Path, method: str) -> None:
    pretrain(tiny(tmp_path, "full", f"pretext.method='{method}'"))
    interrupted = tiny(tmp_path, "cut", f"pretext.method='{method}'")
    pretrain(interrupted, stop_after=5)  # 4 steps/epoch: stops mid-epoch 2, after the checkpoint at step 3
    assert not (tmp_path / "cut" / "model").exists()
    pretrain(interrupted, resume=True)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_views_made_in_workers_resume_bit_identically(tmp_path: Path) -> None:
    """augment_in = 'workers': two worker processes make the views; a resumed run reaches the same weights,
    and the run records where its views were made."""
    extra = ("data.workers=2", "data.augment_in='workers'")
    pretrain(tiny(tmp_path, "full", *extra))
    interrupted = tiny(tmp_path, "cut", *extra)
    pretrain(interrupted, stop_after=5)
    pretrain(interrupted, resume=True)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["augment_in"] == "workers"
    pretrain(tiny(tmp_path, "dev"))  # views made on the device: another random stream, other weights
    device = weights(tmp_path / "dev")
    assert not all(torch.equal(a[k], device[k]) for k in a)


def test_resume_after_a_real_kill_is_bit_identical(tmp_path: Path) -> None:
    """A separate process is SIGKILLed right after its first checkpoint lands; `--resume` then reaches the
    same weights as an uninterrupted run."""
    def cli(name: str) -> list[str]:
        args = [sys.executable, "-m", "urrlkit.cli", "pretrain", str(ROOT / "recipes" / "quickstart.toml"),
                "--no-linear-eval", "--set", f"run.output_dir='{tmp_path}'", "--set", f"run.name='{name}'"]
        for s in [*TINY, "optim.checkpoint_every=1", "optim.epochs=3"]:
            args += ["--set", s]
        return args

    # Same thread count for both runs: float reductions depend on it, resume does not.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run(cli("full"), env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-2000:]
    args = cli("killed")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert latest.exists(), proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    assert not (tmp_path / "killed" / "model").exists(), "killed too late to test resume"
    resumed = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = weights(tmp_path / "full"), weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    pretrain(tiny(tmp_path, "nan"), stop_after=3)
    ckpts = tmp_path / "nan" / "checkpoints"
    with pytest.raises(TrainingError, match=r"non-finite|loss became"):
        pretrain(tiny(tmp_path, "nan", "optim.lr=1e30", "optim.checkpoint_every=1"), resume=True)
    latest = (ckpts / "latest").read_text()
    assert latest >= "step-00000003"
    state = load_file(str(ckpts / latest / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert not list(ckpts.glob(".tmp-*"))


@pytest.mark.parametrize("where", ["device", "workers"])
def test_two_cpu_processes_run_the_engine(tmp_path: Path, where: str) -> None:
    """`torchrun --nproc_per_node 2` with ACCELERATE_USE_CPU=1: a real 2-process (gloo) pretraining run, with the
    views made in each process or in one DataLoader worker per process."""
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "urrlkit.cli", "pretrain",
            str(ROOT / "recipes" / "quickstart.toml"), "--no-linear-eval"]
    workers = ["data.workers=1", "data.augment_in='workers'"] if where == "workers" else []
    for s in [*TINY, f"run.output_dir='{tmp_path}'", "run.name='ddp'", "optim.epochs=1", *workers]:
        args += ["--set", s]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["stage"] == "pretrain-start" and rows[0]["processes"] == 2 and rows[0]["augment_in"] == where
    steps = [r for r in rows if r.get("stage") == "pretrain"]
    assert steps[-1]["step"] == 128 // 32  # global batch 32 split over 2 ranks: 4 steps per epoch
    assert (tmp_path / "ddp" / "model" / "model.safetensors").is_file()


def test_nan_watch_names_the_first_bad_step_only_when_checked() -> None:
    from urrlkit.engine.loop import NaNWatch

    watch = NaNWatch()
    watch.check()  # nothing seen yet
    for step, value in enumerate([1.0, 2.0, float("nan"), float("inf"), 3.0], start=1):
        watch.update(torch.tensor(value), step)  # no host sync here; a later check sees it
    with pytest.raises(TrainingError, match="global step 3;"):
        watch.check()
