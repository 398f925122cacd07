"""`urrl convert`: import a MoCo-style checkpoint (facebookresearch/moco layout) as a urrlkit model directory.

The official main_moco.py saves {"epoch", "arch", "state_dict", "optimizer"} with the query encoder under
`module.encoder_q.` (DataParallel/DDP prefix + MoCo attribute) and the projection head as `fc.*`
(`fc.0`/`fc.2` with --mlp). The trunk keys are torchvision ResNet names, which urrlkit's Encoder keeps
under `trunk.`.
The file is one the user chose, and even so it is read with torch.load(weights_only=True) only.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from urrlkit.errors import CheckpointError
from urrlkit.hub.card import render_card
from urrlkit.hub.local import CARD, atomic_write_bytes, check_finite, load_weights, read_config, save_model
from urrlkit.models import build_encoder

# Tried in order; the first one under which `conv1.weight` exists is the query encoder's prefix.
PREFIXES = ("module.encoder_q.", "encoder_q.", "module.base_encoder.", "base_encoder.", "module.", "")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's top-level dict, never fully unpickled."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        return {"state_dict": load_weights(path)}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise CheckpointError(f"{path}: refused: it needs full unpickling, which urrlkit never does "
                              f"(torch.load weights_only=True said: {first})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def encoder_state(ckpt: dict[str, Any], source: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The query encoder's trunk weights (prefix stripped, projection head `fc.*` dropped) and the prefix."""
    state = ckpt.get("state_dict", ckpt.get("model", ckpt))
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: no state_dict in the checkpoint")
    prefix = next((p for p in PREFIXES if f"{p}conv1.weight" in state), None)
    if prefix is None:
        raise CheckpointError(f"{source}: no ResNet trunk found (looked for conv1.weight under "
                              f"{', '.join(repr(p) for p in PREFIXES[:-1])} or no prefix)")
    trunk = {k[len(prefix):]: v for k, v in state.items()
             if k.startswith(prefix) and isinstance(v, torch.Tensor)}
    trunk = {k: v for k, v in trunk.items() if not k.startswith("fc.")}
    return trunk, prefix


def run_convert(checkpoint: Path, out_dir: Path, *, backbone: str = "resnet50", small_stem: bool = False,
                input_size: int | None = None) -> Path:
    """Write a urrlkit model directory (model.safetensors, config.json, README.md) for a MoCo checkpoint."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    ckpt = read_checkpoint(checkpoint)
    arch = ckpt.get("arch")
    if isinstance(arch, str) and arch != backbone:
        raise CheckpointError(f"{checkpoint}: checkpoint arch is {arch!r}, --backbone says {backbone!r}")
    trunk, prefix = encoder_state(ckpt, checkpoint)
    check_finite(trunk, checkpoint)  # a .pth is read by torch.load, not load_weights: the same refusal here
    conv1 = trunk["conv1.weight"]
    if (conv1.shape[-1] == 3) != small_stem:
        flag = "--small-stem" if conv1.shape[-1] == 3 else "--no-small-stem"
        raise CheckpointError(f"{checkpoint}: conv1 is {conv1.shape[-2]}×{conv1.shape[-1]}; pass {flag}")
    width = int(conv1.shape[0])
    enc = build_encoder(backbone, small_stem=small_stem, width=width if width != 64 else None)
    try:
        enc.trunk.load_state_dict(trunk, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise CheckpointError(f"{checkpoint}: weights do not fit a {backbone} trunk ({first})") from None
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    source = {"file": checkpoint.name, "format": "moco", "prefix": prefix, "arch": arch,
              "epoch": ckpt.get("epoch") if isinstance(ckpt.get("epoch"), int) else None, "sha256": digest}
    save_model(enc.eval(), out_dir, stage="converted", converted_from=source,
               input_size=input_size or (32 if small_stem else 224))
    # A placeholder id until `urrl push --repo org/name` renders the card again with the real one.
    card = render_card(f"your-org/{out_dir.name}", read_config(out_dir))
    atomic_write_bytes(out_dir / CARD, str(card).encode("utf-8"))
    print(f"converted {checkpoint.name} ({len(trunk)} tensors under {prefix!r}, fc.* head dropped) "
          f"-> {out_dir} ({backbone}, {enc.feature_dim}-d features)")
    return out_dir
