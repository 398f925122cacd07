"""Pretraining a method's sample recipe (recipes/methods/<method>_sample.toml, the bundled cifar10-sample) from the
CLI and in-process, for the method tests: the run's kNN top-1 against the untrained encoder's, and stop / resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
# A smaller run of the same recipe for the resume tests: 4 steps per epoch, a checkpoint every 3 steps.
TINY = ["data.train_limit=128", "data.test_limit=64", "data.batch_size=32", "model.width=4", "optim.epochs=2",
        "optim.checkpoint_every=3", "optim.log_every=2", "run.trackers=[]", "monitor.knn=false",
        "monitor.linear=false"]


def sample_recipe(method: str) -> Path:
    return ROOT / "recipes" / "methods" / f"{method}_sample.toml"


def cli_pretrain(method: str, out: Path, name: str, *sets: str, timeout: int = 300) -> list[dict]:
    """`urrl pretrain <method>_sample.toml --no-linear-eval` in a subprocess; the run's metrics.jsonl rows."""
    args = [sys.executable, "-m", "urrlkit.cli", "pretrain", str(sample_recipe(method)), "--no-linear-eval"]
    for s in [f"run.output_dir='{out}'", f"run.name='{name}'", *sets]:
        args += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]


# The learning tests run in the default suite: BYOL for 5 of its recipe's 10 epochs (its kNN top-1 is already well
# above the untrained encoder's then), and the kNN monitor after the last epoch only (monitoring changes nothing
# in training, so the number is the one a run measuring every epoch ends with).
SHORT_EPOCHS = {"byol": 5}


def learning_rows(method: str, out: Path) -> list[dict]:
    """The sample recipe pretrained from the CLI for the learning tests; its metrics.jsonl rows."""
    from urrlkit.config import load

    epochs = SHORT_EPOCHS.get(method) or load(sample_recipe(method)).optim.epochs
    return cli_pretrain(method, out, "run", f"optim.epochs={epochs}", f"monitor.knn_every={epochs}")


def untrained_knn(method: str) -> float:
    """The kNN monitor's top-1 (same images, k, temperature) of the recipe's encoder before any training."""
    from urrlkit.config import load
    from urrlkit.evaluate.inputs import eval_split
    from urrlkit.models import encoder_from_settings
    from urrlkit.pretext.probes import knn_monitor, monitor_subset

    r = load(sample_recipe(method))
    torch.manual_seed(r.run.seed)
    encoder = encoder_from_settings(r.model)
    m, d = r.monitor, r.data
    train, test = (monitor_subset(eval_split(d, s), n) for s, n in (("train", m.knn_train_images),
                                                                    ("test", m.knn_test_images)))
    return knn_monitor(encoder, train, test, d.image_size, m.knn_k, m.knn_temperature, r.eval.batch_size,
                       torch.device("cpu"), 0)


def tiny(method: str, out: Path, name: str, *extra: str) -> object:
    from urrlkit.config import load

    return load(sample_recipe(method), [*TINY, f"run.output_dir='{out}'", f"run.name='{name}'", *extra])


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def stop_and_resume_equal_a_full_run(method: str, out: Path) -> None:
    """An uninterrupted run and one stopped mid-epoch 2 (after the checkpoint at step 3) then resumed reach the
    same encoder, bit for bit."""
    from urrlkit.pretext.workflow import pretrain

    pretrain(tiny(method, out, "full"))  # type: ignore[arg-type]
    cut = tiny(method, out, "cut")
    pretrain(cut, stop_after=5)  # type: ignore[arg-type]
    assert not (out / "cut" / "model").exists()
    pretrain(cut, resume=True)  # type: ignore[arg-type]
    a, b = weights(out / "full"), weights(out / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
