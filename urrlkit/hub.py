"""Save and load urrlkit models (safetensors + config.json + card), locally and on the Hugging Face Hub.

A model directory holds:
  model.safetensors  weights (an Encoder's keys, or a Classifier's `encoder.*` + `head.*`)
  config.json        {"urrlkit_version", "kind": "encoder"|"classifier", "encoder": spec, "num_classes",
                      "classes", "input_size", "recipe", "recipe_hash", ...}
  README.md          the model card
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from urrlkit import __version__
from urrlkit.errors import CheckpointError
from urrlkit.models import Classifier, Encoder, encoder_from_spec

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves a half-written file at `path`."""
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


def save_weights(module: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Atomically save a module's state dict as safetensors."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata or {"format": "pt"})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else, or a corrupt file, is a CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def model_config(model: Encoder | Classifier, recipe: Any = None, **extra: Any) -> dict[str, Any]:
    enc = model.encoder if isinstance(model, Classifier) else model
    cfg: dict[str, Any] = {
        "urrlkit_version": __version__,
        "kind": "classifier" if isinstance(model, Classifier) else "encoder",
        "encoder": enc.spec,
        "num_classes": model.head.out_features if isinstance(model, Classifier) else None,
    }
    if recipe is not None:
        cfg["recipe"] = recipe.to_dict()
        cfg["recipe_hash"] = recipe.digest()
        cfg["input_size"] = recipe.data.image_size
    cfg.update(extra)
    return cfg


def save_model(model: Encoder | Classifier, directory: Path, recipe: Any = None, **extra: Any) -> Path:
    """Write model.safetensors and config.json into `directory` (each atomically)."""
    directory = Path(directory)
    cfg = model_config(model, recipe, **extra)
    save_weights(model, directory / WEIGHTS)
    atomic_write_bytes(directory / CONFIG, json.dumps(cfg, indent=2, sort_keys=True).encode())
    return directory


def resolve_local(name: str | Path) -> Path | None:
    """The model directory (or weights file) for a run dir, model dir or .safetensors path; None if not local."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    if (p / CONFIG).is_file():
        return p
    if (p / "model" / CONFIG).is_file():
        return p / "model"
    return None


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: config.json not found") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: malformed JSON ({exc})") from None


def _build(cfg: dict[str, Any], source: Path) -> Encoder | Classifier:
    try:
        enc = encoder_from_spec(cfg["encoder"])
    except KeyError as exc:
        raise CheckpointError(f"{source}: config.json lacks {exc}") from None
    if cfg.get("kind") == "classifier":
        return Classifier(enc, int(cfg["num_classes"]))
    return enc


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{source}: weights do not match the config ({first})") from None


def load_local(path: Path) -> Encoder | Classifier:
    """Load a local model directory (config + weights)."""
    cfg = read_config(path)
    model = _build(cfg, path)
    _load_state(model, load_weights(path / WEIGHTS), path / WEIGHTS)
    model.config = cfg  # type: ignore[assignment]
    return model.eval()


def load_model(name: str | Path) -> Encoder | Classifier:
    """Load a model by run dir, model dir, .safetensors file (with config.json beside it) or Hub id."""
    local = resolve_local(name)
    if local is None:
        raise CheckpointError(f"{name}: no run directory, model directory or .safetensors file here")
    if local.is_file():
        if local.suffix != ".safetensors":
            raise CheckpointError(f"{local}: only .safetensors weights are loaded")
        model = load_local_file(local)
    else:
        model = load_local(local)
    return model


def load_local_file(path: Path) -> Encoder | Classifier:
    cfg = read_config(path.parent)
    model = _build(cfg, path)
    _load_state(model, load_weights(path), path)
    model.config = cfg  # type: ignore[assignment]
    return model.eval()


def load_backbone(name: str | Path) -> Encoder:
    """The encoder f of a model: [0, 1] images in, `feature_dim` features out."""
    model = load_model(name)
    enc = model.encoder if isinstance(model, Classifier) else model
    enc.config = getattr(model, "config", {})  # type: ignore[assignment]
    return enc
