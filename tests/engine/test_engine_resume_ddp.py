"""Resume with two CPU processes (gloo): a launch SIGKILLed after its first checkpoint, resumed, reaches the
weights of an uninterrupted launch bit for bit (each process restores its own generators and RNG states, and
the seedable sampler its shuffling order)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "data.train_limit=128", "data.test_limit=64", "data.batch_size=32", "model.backbone='resnet10'",
    "model.width=4", "pretext.queue_size=64", "pretext.head_dim=16", "pretext.bn_groups=2",
    "optim.log_every=2", "run.trackers=[]", "optim.epochs=2", "optim.checkpoint_every=1",
]


def launch(out: Path, name: str) -> list[str]:
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "urrlkit.cli", "pretrain",
            str(ROOT / "recipes" / "quickstart.toml"), "--no-linear-eval"]
    for s in [*TINY, f"run.output_dir='{out}'", f"run.name='{name}'"]:
        args += ["--set", s]
    return args


@pytest.mark.slow
def test_two_process_resume_after_a_kill_is_bit_identical(tmp_path: Path) -> None:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    full = subprocess.run(launch(tmp_path, "full"), env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 0, full.stderr[-3000:]
    proc = subprocess.Popen(launch(tmp_path, "cut"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    ckpts = tmp_path / "cut" / "checkpoints"
    deadline = time.time() + 300
    while not (ckpts / "latest").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers at once
    proc.wait()
    assert (ckpts / "latest").exists() and not (tmp_path / "cut" / "model").exists(), "killed at the wrong time"
    step = ckpts / (ckpts / "latest").read_text()
    assert {p.name for p in step.iterdir()} >= {"rank-0.safetensors", "rank-1.safetensors", "state.json"}
    resumed = subprocess.run([*launch(tmp_path, "cut"), "--resume"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
