"""Training state on disk without pickle: tensors in safetensors, everything else as JSON in its metadata.

A state tree (optimizer state dicts, RNG states, generator states, counters) is split into its tensors and a
JSON skeleton in which each tensor is a reference. Loading parses JSON and safetensors only and rebuilds
nothing but dicts, lists, tuples, numbers, strings, tensors and numeric numpy arrays, so a planted or
tampered file can fail to load but can never run code (unlike `torch.load(weights_only=False)`, which is what
Accelerate's `load_state` uses for its `custom_checkpoint_*.pkl` files).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from urrlkit.errors import CheckpointError

TREE_KEY = "urrlkit_state"
# numpy arrays in RNG states (MT19937 keys are uint32); nothing else is rebuilt from a dtype name.
NUMPY_DTYPES = {"uint32": np.uint32, "int64": np.int64, "float64": np.float64, "uint8": np.uint8}
MAX_JSON_BYTES = 1 << 20


def encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The JSON skeleton of `obj`; its tensors are added to `tensors` and referenced as {"$t": key}."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous()
        return {"$t": key}
    if isinstance(obj, np.ndarray):
        if obj.dtype.name not in NUMPY_DTYPES:
            raise TypeError(f"numpy dtype {obj.dtype} cannot be stored")
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(obj.astype(np.int64) if obj.dtype == np.uint32 else obj.copy())
        return {"$np": key, "dtype": obj.dtype.name}
    if isinstance(obj, bool | int | float | str) or obj is None:
        return obj
    if isinstance(obj, np.integer | np.floating):
        return obj.item()
    if isinstance(obj, tuple):
        return {"$tuple": [encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: encode(v, tensors) for k, v in obj.items()}
        return {"$d": [[encode(k, tensors), encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"{type(obj).__name__} cannot be stored in a state file")


def decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of `encode`; a malformed skeleton raises ValueError/KeyError/TypeError."""
    if isinstance(node, list):
        return [decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        if node is None or isinstance(node, bool | int | float | str):
            return node
        raise TypeError(f"unexpected {type(node).__name__}")
    if any(k.startswith("$") for k in node):
        if "$t" in node:
            return tensors[node["$t"]]
        if "$np" in node:
            dtype = NUMPY_DTYPES[node["dtype"]]
            return np.asarray(tensors[node["$np"]].numpy(), dtype=dtype)
        if "$tuple" in node:
            return tuple(decode(v, tensors) for v in node["$tuple"])
        if "$d" in node:
            return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in node["$d"]}
        raise ValueError(f"unknown marker {sorted(node)[0]!r}")
    return {k: decode(v, tensors) for k, v in node.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, bool | int | float | str | tuple) or key is None:
        return key
    raise TypeError(f"unusable dict key of type {type(key).__name__}")


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write (full or read-only disk, quota, file-size limit) into one CheckpointError line
    naming the file and saying "disk full" when it is; safetensors reports such errors as SafetensorError."""
    try:
        yield
    except (OSError, SafetensorError) as exc:
        text = str(exc)
        full = getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in text or "StorageFull" in text
        reason = "the disk is full" if full else (getattr(exc, "strerror", None) or _first_line(exc))
        raise CheckpointError(f"{path}: cannot write ({reason})") from None


def write_state(path: Path, obj: Any) -> None:
    """Write `obj` (a state tree) to `path` as one safetensors file, atomically and durably."""
    tensors: dict[str, torch.Tensor] = {}
    tree = json.dumps(encode(obj, tensors))
    atomic_save_file(tensors, path, {"format": "pt", TREE_KEY: tree})


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """safetensors' save_file via a temporary file, fsync and rename: a crash never leaves half a file at
    `path`, and a full disk is one line naming it (``writing``)."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=metadata)
            fsync_file(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def read_state(path: Path) -> Any:
    """The state tree in `path`; anything else (a pickle, a truncated or edited file) is a CheckpointError."""
    plain_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            tree = (fh.metadata() or {}).get(TREE_KEY)
            if tree is None:
                raise ValueError("no urrlkit state in its metadata")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        return decode(json.loads(tree), tensors)
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a valid urrlkit state file ({_first_line(exc)})") from None


def check_file(path: Path, state: bool) -> None:
    """Parse only the safetensors header of `path` (and, for a state file, its JSON skeleton): a planted or
    truncated file is found before a resume writes anything, without loading a tensor."""
    plain_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if state:
            if TREE_KEY not in meta:
                raise ValueError("no urrlkit state in its metadata")
            json.loads(meta[TREE_KEY])
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid urrlkit state file ({_first_line(exc)})") from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file at `path`."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1).encode())


def read_json(path: Path) -> dict[str, Any]:
    plain_file(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise ValueError(f"larger than {MAX_JSON_BYTES} bytes")
        obj = json.loads(data)
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return obj
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a valid JSON state file ({_first_line(exc)})") from None


def plain_file(path: Path) -> None:
    """Checkpoint files are regular files inside the checkpoint folder: a symlink could point anywhere."""
    if path.is_symlink():
        raise CheckpointError(f"{path}: is a symbolic link; checkpoint files must be regular files")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the checkpoint")


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
