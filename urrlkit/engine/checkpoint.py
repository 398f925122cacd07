"""Atomic, resumable checkpoints on top of Accelerate's save_state / load_state.

Layout under `<run_dir>/checkpoints/`: `step-00000123/` folders (Accelerate state: model weights as
safetensors, optimizer, RNG states, registered objects) and a `latest` file naming the newest complete one.
A checkpoint is written to a hidden temporary folder and renamed into place; `latest` is rewritten atomically
afterwards, so a kill at any moment leaves the previous checkpoint intact and `latest` pointing at it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from urrlkit.errors import CheckpointError
from urrlkit.hub import atomic_write_bytes


class TrainState:
    """Position in training, saved with every checkpoint."""

    def __init__(self) -> None:
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step}

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.epoch, self.step_in_epoch, self.global_step = d["epoch"], d["step_in_epoch"], d["global_step"]


class Generators:
    """Every torch.Generator that drives training randomness (augmentations, shuffle-BN, memory banks),
    so that a resumed run draws exactly what the uninterrupted one would have."""

    def __init__(self, gens: list[torch.Generator]) -> None:
        self.gens = gens

    def state_dict(self) -> dict[str, Any]:
        return {"states": [g.get_state() for g in self.gens]}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for g, s in zip(self.gens, d["states"], strict=True):
            g.set_state(s)


def module_generators(module: torch.nn.Module) -> list[torch.Generator]:
    """torch.Generator attributes of a module tree, in a stable order."""
    found = []
    for _, m in sorted(module.named_modules(), key=lambda kv: kv[0]):
        for name in sorted(vars(m)):
            if isinstance(getattr(m, name), torch.Generator):
                found.append(getattr(m, name))
    return found


class Checkpointer:
    def __init__(self, acc: Accelerator, directory: Path, keep: int = 2) -> None:
        self.acc = acc
        self.dir = Path(directory)
        self.keep = keep

    def latest(self) -> Path | None:
        pointer = self.dir / "latest"
        if not pointer.is_file():
            return None
        path = self.dir / pointer.read_text().strip()
        if not path.is_dir():
            raise CheckpointError(f"{pointer}: names {path.name}, which is missing")
        return path

    def save(self, global_step: int) -> Path:
        name = f"step-{global_step:08d}"
        final = self.dir / name
        tmp = self.dir / f".tmp-{name}"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        barrier(self.acc)
        self.acc.save_state(str(tmp))
        barrier(self.acc)
        if self.acc.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            atomic_write_bytes(self.dir / "latest", name.encode())
            self._prune(keep_name=name)
        barrier(self.acc)
        return final

    def _prune(self, keep_name: str) -> None:
        done = sorted(p for p in self.dir.glob("step-*") if p.is_dir())
        for old in done[: max(0, len(done) - self.keep)]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)

    def load(self) -> Path:
        path = self.latest()
        if path is None:
            raise CheckpointError(f"{self.dir}: no checkpoint to resume from (run without --resume to start)")
        try:
            self.acc.load_state(str(path))
        except (RuntimeError, OSError, KeyError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise CheckpointError(f"{path}: cannot restore checkpoint ({first})") from None
        return path


def barrier(acc: Accelerator) -> None:
    """``acc.wait_for_everyone()``, except for CPU processes (gloo): Accelerate passes
    ``device_ids=[local_rank]`` there too, and on a host that also has a GPU torch then places the barrier on
    ``cuda:<local_rank>`` — "invalid device ordinal" on rank 1 of a one-GPU machine (seen on an H100 host with
    ACCELERATE_USE_CPU=1). A plain gloo barrier needs no device."""
    if acc.distributed_type == DistributedType.MULTI_CPU:
        torch.distributed.barrier()
    else:
        acc.wait_for_everyone()
