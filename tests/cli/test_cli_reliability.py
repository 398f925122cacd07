"""The CLI on a shared machine and under a scheduler, with real processes: one writer per run directory
(a stale lock is reclaimed), SIGTERM stops like Ctrl-C (exit 143, last checkpoint kept), run names cannot
leave output_dir, and OpenMP defaults to passive waiting unless the user chose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "data.train_limit=128", "data.test_limit=64", "data.batch_size=32", "model.backbone='resnet10'",
    "model.width=4", "pretext.queue_size=64", "pretext.head_dim=16", "pretext.bn_groups=2",
    "optim.epochs=2", "optim.checkpoint_every=3", "optim.log_every=2", "run.trackers=[]",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def pretrain_args(out: Path, name: str, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "urrlkit.cli", "pretrain", str(ROOT / "recipes" / "quickstart.toml"),
            "--no-linear-eval"]
    for s in [*TINY, f"run.output_dir='{out}'", f"run.name='{name}'", *extra]:
        args += ["--set", s]
    return args


def hold_lock(directory: Path) -> subprocess.Popen:
    code = ("import sys, time; from pathlib import Path; from urrlkit.engine.lock import lock_run_dir\n"
            f"lock_run_dir(Path({str(directory)!r})); print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def one_clean_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def test_second_writer_is_refused_and_a_dead_holders_lock_is_reclaimed(tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    holder = hold_lock(run)
    try:
        second = subprocess.run(pretrain_args(tmp_path, "r"), capture_output=True, text=True, env=ENV, timeout=300)
        assert second.returncode == 2
        line = one_clean_line(second.stderr)
        assert str(run) in line and f"pid {holder.pid}" in line and "in use by another urrl process" in line
        assert not (run / "recipe.toml").exists()  # refused before writing anything
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without cleaning up: its lock file is still there, but the lock is free.
    assert (run / ".urrl.lock").exists()
    again = hold_lock(run)
    again.kill()
    again.wait()


def test_two_real_pretrain_processes_on_one_run_directory(tmp_path: Path) -> None:
    """A `--resume` (with another recipe) while the run is still going is refused; the first run's recipe.toml
    is untouched, and the first run stops cleanly afterwards."""
    first = subprocess.Popen(pretrain_args(tmp_path, "r", "optim.epochs=200", "optim.checkpoint_every=1"), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latest = tmp_path / "r" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    stored = (tmp_path / "r" / "recipe.toml").read_text()
    second = subprocess.run([*pretrain_args(tmp_path, "r", "optim.lr=0.5"), "--resume"], capture_output=True,
                            text=True, env=ENV, timeout=300)
    still_running = first.poll() is None
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    assert still_running, "the first run ended too early to test"
    assert second.returncode == 2 and "in use by another urrl process" in one_clean_line(second.stderr)
    assert (tmp_path / "r" / "recipe.toml").read_text() == stored


def test_sigterm_stops_cleanly_keeping_the_last_checkpoint(tmp_path: Path) -> None:
    args = pretrain_args(tmp_path, "t", "optim.checkpoint_every=1", "optim.epochs=3")
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    latest = tmp_path / "t" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert not (tmp_path / "t" / "model").exists(), "stopped too late to test"
    assert proc.returncode == 143, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    kept = tmp_path / "t" / "checkpoints" / (tmp_path / "t" / "checkpoints" / "latest").read_text()
    assert "Traceback" not in stderr
    assert last == f"terminated (SIGTERM); the last complete checkpoint ({kept}) is kept (continue with --resume)"
    resumed = subprocess.run([*args, "--resume"], capture_output=True, text=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (tmp_path / "t" / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("name", ["../../escape", "/abs/name", "a/b", "..", ".", "a\\b", " x"])
def test_run_names_cannot_leave_output_dir(tmp_path: Path, name: str) -> None:
    from urrlkit.config import load
    from urrlkit.errors import RecipeError

    with pytest.raises(RecipeError, match=r"run\.name") as info:
        load(ROOT / "recipes" / "quickstart.toml", [f"run.output_dir='{tmp_path}'", f"run.name={name!r}"])
    assert "\n" not in str(info.value)


PRINT_ENV = "import os, urrlkit.cli; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_NUM_THREADS'))"


@pytest.mark.parametrize(("given", "expect"), [
    ({}, "PASSIVE {n}"),
    ({"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}, "ACTIVE 3"),
    ({"URRL_THREAD_TUNING": "0"}, "None None"),
])
def test_cli_defaults_openmp_for_a_shared_machine(given: dict[str, str], expect: str) -> None:
    from urrlkit.engine.allocator import available_cpus

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", PRINT_ENV], env={**env, **given}, capture_output=True, text=True)
    assert proc.stdout.strip() == expect.format(n=available_cpus()), proc.stderr


def test_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom urrlkit.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "False"


class _Broken(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        from urrlkit.errors import DataError

        raise DataError(f"images/{i}.jpg: truncated JPEG")


def test_a_worker_data_error_is_one_line() -> None:
    """torch re-raises a worker's DataError with the worker's traceback as its message; the CLI prints only
    the line it carries."""
    from urrlkit.cli import user_message
    from urrlkit.errors import DataError

    with pytest.raises(DataError) as info:
        next(iter(torch.utils.data.DataLoader(_Broken(), num_workers=1)))
    assert "Original Traceback" in str(info.value)  # what torch hands over
    assert user_message(info.value) == "images/0.jpg: truncated JPEG"


def test_a_failed_write_is_one_line_naming_the_file(tmp_path: Path) -> None:
    """A file-size limit (as a full disk would) makes checkpoint and model writes fail: one CheckpointError line
    naming the file, no raw SafetensorError."""
    code = f"""
import resource, signal
from pathlib import Path
import torch
from accelerate import Accelerator
from urrlkit.engine.checkpoint import Checkpointer, TrainState
from urrlkit.errors import CheckpointError
from urrlkit.hub import save_model
from urrlkit.models import build_encoder

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
enc = build_encoder("resnet10", small_stem=True, width=8)
opt = torch.optim.SGD(enc.parameters(), lr=0.1, momentum=0.9)
ckpt = Checkpointer(Accelerator(cpu=True), Path({str(tmp_path)!r}) / "ck")
ckpt.attach(enc, opt, TrainState(), [])
resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
for write in (lambda: save_model(enc, Path({str(tmp_path)!r}) / "m"), lambda: ckpt.save(1)):
    try:
        write()
    except CheckpointError as exc:
        print(exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2, proc.stderr[-2000:]
    assert lines[0].startswith(f"{tmp_path / 'm' / 'model.safetensors'}: cannot write (")
    assert lines[1].startswith(str(tmp_path / "ck" / ".tmp-step-00000001")) and "cannot write" in lines[1]
    assert not (tmp_path / "ck" / "latest").exists()


def test_finetune_refuses_a_directory_another_process_writes(tmp_path: Path) -> None:
    from urrlkit.hub import save_model
    from urrlkit.models import build_encoder

    model = save_model(build_encoder("resnet10", small_stem=True, width=4), tmp_path / "enc")
    out = tmp_path / "runs" / "quickstart" / "finetune-none"
    out.mkdir(parents=True)
    holder = hold_lock(out)
    try:
        args = [sys.executable, "-m", "urrlkit.cli", "finetune", str(ROOT / "recipes" / "quickstart.toml"),
                "--from", str(model), "--reg", "none", "--set", f"run.output_dir='{tmp_path / 'runs'}'"]
        proc = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    assert f"{out}: in use by another urrl process (pid {holder.pid}" in one_clean_line(proc.stderr)
    assert sorted(p.name for p in out.iterdir()) == [".urrl.lock"]


def test_linear_eval_refuses_a_directory_another_process_writes(tmp_path: Path) -> None:
    from urrlkit.config import load
    from urrlkit.engine.lock import RunLocked
    from urrlkit.finetune.linear import run_linear_eval
    from urrlkit.models import build_encoder

    out = tmp_path / "linear"
    out.mkdir()
    holder = hold_lock(out)
    try:
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
            run_linear_eval(load(ROOT / "recipes" / "quickstart.toml", TINY),
                            build_encoder("resnet10", small_stem=True, width=4), out_dir=out)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in out.iterdir()) == [".urrl.lock"]
