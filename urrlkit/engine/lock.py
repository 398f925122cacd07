"""One writer per run directory, and a resume only with changes that keep the run what it was.

`lock_run_dir` takes an exclusive `fcntl.flock` on `<dir>/.urrl.lock` and keeps it until the process ends.
The kernel drops a flock when its holder dies (SIGKILL and OOM included), so a dead holder's lock is reclaimed
by the next run without any clean-up; the file records pid, host and start time only to name the holder in
the error. DataLoader workers forked by the holder share its lock until they exit too (they stop when their
parent dies). flock is per host: two machines writing one run directory over NFS are not excluded.
"""

from __future__ import annotations

import json
import os
import socket
import time
import tomllib
from pathlib import Path
from typing import Any

from urrlkit.errors import UrrlError

LOCK_NAME = ".urrl.lock"
# Keys a --resume may change. They leave every saved tensor's shape and meaning as it was, so the checkpoint
# still loads and training continues deliberately differently (lower the lr after a divergence, train longer,
# checkpoint more often) or identically (progress, trackers, loader processes, the evaluations afterwards).
# Any other difference (model, pretext, data, seed, optimizer kind, batch) would make the weights in the run
# directory disagree with its recipe, so it is refused.
# Not optim.momentum / optim.weight_decay: torch's Optimizer.load_state_dict restores the saved param groups'
# values over the new ones, so a change would be accepted and then silently ignored (the loop re-sets only lr).
RESUME_MAY_CHANGE = ("optim.lr", "optim.lr_per_256", "optim.schedule", "optim.milestones", "optim.epochs",
                     "optim.warmup_epochs", "optim.checkpoint_every",
                     "optim.log_every", "run.trackers", "data.workers", "linear_eval.", "eval.",
                     # the kNN monitor only measures (no state); monitor.linear / linear_lr shape the checkpoint
                     "monitor.knn", "monitor.knn_k", "monitor.knn_temperature", "monitor.knn_every",
                     "monitor.knn_train_images", "monitor.knn_test_images",
                     # the health monitor measures too (its rows are not checkpointed)
                     "monitor.health", "monitor.health_rows", "monitor.health_std_ratio", "monitor.health_chance_tol",
                     # lr_sqrt states the lr as lr and lr_per_256 do
                     "optim.lr_sqrt")

_held: dict[Path, int] = {}  # directory → open lock file descriptor, for the life of the process


class RunLocked(UrrlError):
    """Another process is writing this run directory."""


def lock_run_dir(directory: Path) -> Path | None:
    """Create `directory` if needed and hold its lock until this process exits; refuse with RunLocked if
    another process holds it. Re-entrant within one process (pretraining then linear evaluation, or tests
    calling twice). In a multi-process launch only global rank 0 takes it (one launch is one writer)."""
    import fcntl

    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, a read-only or full disk, no permission
        raise UrrlError(f"{directory}: cannot create the output directory ({exc.strerror or exc})") from None
    if os.environ.get("RANK", "0") != "0":
        return None
    key = directory.resolve()
    if key in _held:
        return directory / LOCK_NAME
    path = directory / LOCK_NAME
    if path.is_symlink():
        raise UrrlError(f"{path}: is a symbolic link; remove it (urrlkit keeps its lock file there)")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise UrrlError(f"{directory}: cannot write in the output directory ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(path)
        os.close(fd)
        raise RunLocked(f"{directory}: in use by another urrl process ({holder}); wait for it to finish or "
                        "choose another run.name / run.output_dir") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    _held[key] = fd
    return path


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text()[:4096])
        return f"pid {info['pid']} on {info['host']}, since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def recipe_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two recipe dicts (a key on one side only counts)."""
    a, b = _flat(stored), _flat(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, _MISSING) != b.get(k, _MISSING))


def with_defaults(recipe: Any, stored: dict[str, Any]) -> dict[str, Any]:
    """The stored recipe with the defaults of fields added since it was written (validated by the new recipe's
    own class), so a run from an older urrlkit resumes: a new field's default keeps the old behaviour. A stored
    recipe the class no longer accepts is compared as written (its differing keys are then named)."""
    try:
        read = getattr(type(recipe), "from_recorded", type(recipe).model_validate)
        return tomllib.loads(read(stored).to_toml())
    except (AttributeError, ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        return stored


def check_resume_recipe(recipe: Any, path: Path) -> list[str]:
    """Before a --resume writes anything: refuse a recipe that differs from the run's stored `recipe.toml` in
    a key outside RESUME_MAY_CHANGE, and a missing or unreadable checkpoint, each with one line naming the keys
    or file (the stored recipe is left as it is). Returns the changed keys that are allowed, after saying them."""
    from urrlkit.engine.checkpoint import preflight

    changed: list[str] = []
    if path.is_file():
        try:
            stored = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise UrrlError(f"{path}: unreadable stored recipe ({exc})") from None
        changed = recipe_differences(with_defaults(recipe, stored), tomllib.loads(recipe.to_toml()))
        refused = [k for k in changed if not _may_change(k)]
        if refused:
            raise UrrlError(f"{path}: --resume with a recipe that differs in {_list(refused)}, which a run cannot "
                            "change midway; resume with the run's own recipe, or start a new run under another "
                            "run.name")
    preflight(path.parent / "checkpoints")
    if changed and os.environ.get("RANK", "0") == "0":
        from urrlkit.engine.logging import console

        console.print(f"note: resuming with changed {_list(changed)} (recipe.toml will record the new values)",
                      markup=False)
    return changed


def _may_change(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUME_MAY_CHANGE)


def _list(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")


_MISSING = object()


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
