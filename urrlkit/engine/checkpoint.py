"""Atomic, exactly resumable checkpoints that never unpickle anything.

Layout under `<run_dir>/checkpoints/`: `step-00000123/` folders and a `latest` file naming the newest complete
one. A checkpoint folder holds
  model.safetensors     the (unwrapped) model's state dict (main process)
  optimizer.safetensors the optimizer's state: tensors + a JSON skeleton in the metadata (main process)
  rank-<r>.safetensors  per process: Python / numpy / torch (CPU and CUDA) RNG states, the training
                        generators, extra per-process tensors (e.g. views-per-family counts), GradScaler state
  state.json            loop counters: epoch, step in epoch, global step, Accelerate's step, process count
Resume reads exactly these files with safetensors and json (see `urrlkit/engine/statefile.py`); nothing is
ever unpickled, so a planted `.pkl`/`.bin` is never even opened. Accelerate's own `save_state`/`load_state`
is not used: it pickles RNG states and registered objects and loads them with `weights_only=False`.
A checkpoint is written to a hidden temporary folder and renamed into place; `latest` is rewritten atomically
afterwards, so a kill at any moment leaves the previous checkpoint intact and `latest` pointing at it.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedType
from safetensors.torch import load_model, save_model

from urrlkit.engine.statefile import (
    atomic_write_bytes,
    check_file,
    fsync_file,
    plain_file,
    read_json,
    read_state,
    write_json,
    write_state,
    writing,
)
from urrlkit.errors import CheckpointError

FORMAT = 2  # 1 was Accelerate's pickle-based save_state
STEP_NAME = re.compile(r"step-\d{8}")
PICKLED = ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin")


def preflight(directory: Path) -> Path:
    """What `Checkpointer.load` checks before touching any state: a checkpoint to resume from, reached through
    a well-formed `latest`, in the current format. Cheap; lets a --resume fail before it writes anything."""
    path = _locate(Path(directory))
    if path is None:
        raise CheckpointError(f"{directory}: no checkpoint to resume from (run without --resume to start)")
    if not (path / "state.json").exists() and any((path / f).exists() for f in PICKLED):
        raise CheckpointError(f"{path}: written by an older urrlkit in Accelerate's pickle format, which is "
                              "never loaded (unpickling can run code); delete the checkpoints folder and "
                              "start again")
    meta = read_json(path / "state.json")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path / 'state.json'}: unknown checkpoint format {meta.get('format')!r}")
    processes = meta.get("processes")
    if not isinstance(processes, int) or not 1 <= processes <= 65536:
        raise CheckpointError(f"{path / 'state.json'}: processes must be a positive integer")
    check_file(path / "model.safetensors", state=False)
    check_file(path / "optimizer.safetensors", state=True)
    for rank in range(processes):
        check_file(path / f"rank-{rank}.safetensors", state=True)
    return path


def _locate(directory: Path) -> Path | None:
    """The checkpoint `latest` names. It must name a `step-NNNNNNNN` folder directly inside the checkpoint
    folder: anything else (`../x`, an absolute path, a symlink) could make resume read outside the run."""
    pointer = directory / "latest"
    if directory.is_symlink():
        raise CheckpointError(f"{directory}: is a symbolic link; refusing to resume from outside the run")
    if not pointer.exists() and not pointer.is_symlink():
        return None
    if pointer.is_symlink() or not pointer.is_file():
        raise CheckpointError(f"{pointer}: must be a regular file naming a checkpoint folder")
    with pointer.open("rb") as fh:
        name = fh.read(64).decode("ascii", errors="replace").strip()
    if not STEP_NAME.fullmatch(name):
        raise CheckpointError(f"{pointer}: names {name[:40]!r}, not a checkpoint folder of this run "
                              "(expected step-NNNNNNNN)")
    path = directory / name
    if path.is_symlink():
        raise CheckpointError(f"{path}: is a symbolic link; refusing to resume from outside the run")
    if not path.is_dir():
        raise CheckpointError(f"{pointer}: names {name}, which is missing")
    return path


class TrainState:
    """Position in training, saved with every checkpoint."""

    def __init__(self) -> None:
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        values = [d.get(k) for k in ("epoch", "step_in_epoch", "global_step")]
        counters = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
        if len(counters) != len(values):
            raise ValueError(f"loop counters must be non-negative integers, got {values}")
        self.epoch, self.step_in_epoch, self.global_step = counters


def module_generators(module: torch.nn.Module) -> list[torch.Generator]:
    """torch.Generator attributes of a module tree, in a stable order."""
    found = []
    for _, m in sorted(module.named_modules(), key=lambda kv: kv[0]):
        for name in sorted(vars(m)):
            if isinstance(getattr(m, name), torch.Generator):
                found.append(getattr(m, name))
    return found


class Checkpointer:
    """Saves and restores what `attach` names: model, optimizer, loop counters, generators, extra tensors."""

    def __init__(self, acc: Accelerator, directory: Path, keep: int = 2) -> None:
        self.acc = acc
        self.dir = Path(directory)
        self.keep = keep
        self.model: torch.nn.Module | None = None
        self.optimizer: Any = None
        self.state = TrainState()
        self.generators: list[torch.Generator] = []
        self.extra: dict[str, torch.Tensor] = {}

    def attach(self, model: torch.nn.Module, optimizer: Any, state: TrainState,
               generators: list[torch.Generator], extra: dict[str, torch.Tensor] | None = None) -> None:
        self.model, self.optimizer, self.state = model, optimizer, state
        self.generators, self.extra = list(generators), dict(extra or {})

    # ------------------------------------------------------------------------------------------- locate

    def latest(self) -> Path | None:
        """The complete checkpoint `latest` names (see `_locate`), or None before the first."""
        return _locate(self.dir)

    # ------------------------------------------------------------------------------------------- save

    def save(self, global_step: int) -> Path:
        name = f"step-{global_step:08d}"
        final = self.dir / name
        tmp = self.dir / f".tmp-{name}"
        acc = self.acc
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            with writing(tmp):
                tmp.mkdir(parents=True)
        barrier(acc)
        write_state(tmp / f"rank-{acc.process_index}.safetensors", self._process_state())
        if acc.is_main_process:
            if self.model is not None:
                with writing(tmp / "model.safetensors"):
                    save_model(acc.unwrap_model(self.model), str(tmp / "model.safetensors"))
                    fsync_file(tmp / "model.safetensors")
            if self.optimizer is not None:
                write_state(tmp / "optimizer.safetensors", self.optimizer.state_dict())
            write_json(tmp / "state.json", {"format": FORMAT, "processes": acc.num_processes,
                                            "accelerator_step": int(acc.step), **self.state.state_dict()})
        barrier(acc)
        if acc.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            with writing(self.dir / "latest"):
                atomic_write_bytes(self.dir / "latest", name.encode())
            self._prune(keep_name=name)
        barrier(acc)
        return final

    def _process_state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                               "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        scaler = getattr(self.acc, "scaler", None)
        return {"rng": rng, "generators": [g.get_state() for g in self.generators], "extra": self.extra,
                "scaler": scaler.state_dict() if scaler is not None else None}

    def _prune(self, keep_name: str) -> None:
        done = sorted(p for p in self.dir.glob("step-*") if p.is_dir())
        for old in done[: max(0, len(done) - self.keep)]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------------------------------- load

    def load(self) -> Path:
        path = preflight(self.dir)
        acc = self.acc
        meta = read_json(path / "state.json")
        if meta.get("processes") != acc.num_processes:
            raise CheckpointError(f"{path}: written by {meta.get('processes')} processes; resume with the same "
                                  f"number (this launch has {acc.num_processes})")
        self._guard(path / "state.json", lambda: self.state.load_state_dict(meta))
        step = meta.get("accelerator_step", 0)
        if not isinstance(step, int) or step < 0:
            raise CheckpointError(f"{path / 'state.json'}: accelerator_step must be a non-negative integer")
        if self.model is not None:
            self._guard(path / "model.safetensors", lambda: self._load_model(path / "model.safetensors"))
        if self.optimizer is not None:
            opt_state = read_state(path / "optimizer.safetensors")
            self._guard(path / "optimizer.safetensors", lambda: self._load_optimizer(opt_state))
        rank_file = path / f"rank-{acc.process_index}.safetensors"
        proc = read_state(rank_file)
        self._guard(rank_file, lambda: self._load_process(proc))
        acc.step = step
        return path

    @staticmethod
    def _guard(path: Path, fn: Any) -> None:
        try:
            fn()
        except CheckpointError:
            raise
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: cannot restore checkpoint ({first})") from None

    def _load_model(self, file: Path) -> None:
        plain_file(file)
        try:
            load_model(self.acc.unwrap_model(self.model), str(file), strict=True, device="cpu")
        except Exception as exc:  # safetensors raises its own error type for a corrupt header
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{file}: cannot restore checkpoint ({first})") from None

    def _load_optimizer(self, sd: Any) -> None:
        if not isinstance(sd, dict) or not isinstance(sd.get("state"), dict) or not isinstance(
                sd.get("param_groups"), list):
            raise ValueError("not an optimizer state dict")
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for idx, entry in sd["state"].items():
            if not isinstance(idx, int) or not 0 <= idx < len(params) or not isinstance(entry, dict):
                raise ValueError(f"state for parameter {idx!r}, which this optimizer does not have")
            for key, value in entry.items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[idx].shape:
                    raise ValueError(f"state.{idx}.{key} has shape {tuple(value.shape)}, the parameter "
                                     f"{tuple(params[idx].shape)}")
        self.optimizer.load_state_dict(sd)

    def _load_process(self, proc: Any) -> None:
        rng = proc["rng"]
        gens = proc["generators"]
        if len(gens) != len(self.generators):
            raise ValueError(f"{len(gens)} generator states for {len(self.generators)} generators")
        extra = proc["extra"]
        if set(extra) != set(self.extra):
            raise ValueError(f"extra state {sorted(extra)} where {sorted(self.extra)} is expected")
        for key, t in self.extra.items():
            if not isinstance(extra[key], torch.Tensor) or extra[key].shape != t.shape:
                raise ValueError(f"extra state {key!r} does not have shape {tuple(t.shape)}")
        for g, s in zip(self.generators, gens, strict=True):
            if not isinstance(s, torch.Tensor) or s.dtype != torch.uint8:
                raise ValueError("generator states must be uint8 tensors")
            g.set_state(s)
        for key, t in self.extra.items():
            t.copy_(extra[key])
        random.setstate(_python_rng(rng["python"]))
        np.random.set_state(rng["numpy"])
        if not isinstance(rng["torch"], torch.Tensor) or rng["torch"].dtype != torch.uint8:
            raise ValueError("torch RNG state must be a uint8 tensor")
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available() and "cuda" in rng:
            torch.cuda.set_rng_state_all(rng["cuda"])
        scaler = getattr(self.acc, "scaler", None)
        if scaler is not None and proc.get("scaler") is not None:
            scaler.load_state_dict(proc["scaler"])


def _python_rng(state: Any) -> tuple:
    """random.setstate wants (version, tuple of 625 ints, gauss_next)."""
    if not (isinstance(state, tuple) and len(state) == 3 and isinstance(state[1], tuple)
            and all(isinstance(v, int) for v in state[1])):
        raise ValueError("malformed Python RNG state")
    return state


def barrier(acc: Accelerator | PartialState) -> None:
    """``acc.wait_for_everyone()``, except for CPU processes (gloo): Accelerate passes
    ``device_ids=[local_rank]`` there too, and on a host that also has a GPU torch then places the barrier on
    ``cuda:<local_rank>`` — "invalid device ordinal" on rank 1 of a one-GPU machine (seen on an H100 host with
    ACCELERATE_USE_CPU=1). A plain gloo barrier needs no device."""
    if acc.distributed_type == DistributedType.MULTI_CPU:
        torch.distributed.barrier()
    else:
        acc.wait_for_everyone()
