"""Weights other libraries load: model.safetensors uses torchvision's ResNet key names (conv1, bn1, layer1…,
fc), which timm's ResNet shares, and config.json carries the fields timm's `hf_hub:` loader reads.

The in-memory model (Normalize + trunk [+ head]) has prefixed names; these functions translate at the file
boundary, so torchvision and timm users load our files without renaming, and older files (saved with the
prefixed names) still load. Normalisation is not a tensor in the file: its mean/std live in config.json
(`encoder.mean/std`, and timm's `pretrained_cfg.mean/std`), and a torchvision/timm user applies them.
"""

from __future__ import annotations

from typing import Any

import torch

TRUNK = "trunk."
NORMALIZE = "normalize."
# timm's factory names for our torchvision-built trunks; resnet10 is timm's resnet18 with one block per stage.
TIMM_ARCH = {"resnet18": ("resnet18", None), "resnet34": ("resnet34", None), "resnet50": ("resnet50", None),
             "resnet10": ("resnet18", [1, 1, 1, 1])}


def _prefix(kind: str) -> str:
    return "encoder." + TRUNK if kind == "classifier" else TRUNK


def to_file_name(name: str, kind: str) -> str | None:
    """The file name of an in-memory tensor name; None for the normalisation buffers (kept in config.json)."""
    if kind == "classifier" and name.startswith("head."):
        return "fc." + name[len("head."):]
    prefix = _prefix(kind)
    return name[len(prefix):] if name.startswith(prefix) else None


def to_model_name(name: str, kind: str) -> str:
    if kind == "classifier" and name.startswith("fc."):
        return "head." + name[len("fc."):]
    return _prefix(kind) + name


def is_file_layout(names: Any) -> bool:
    """True for the torchvision layout, False for the older prefixed one (which named `trunk.` tensors)."""
    return not any(n.startswith((TRUNK, "encoder.")) for n in names)


def file_state(state: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        key = to_file_name(name, kind)
        if key is not None:
            out[key] = tensor
    return out


def model_state(state: dict[str, torch.Tensor], kind: str, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A file's tensors under the model's names; the normalisation buffers come from `own` (the model as built
    from config.json, whose spec holds mean/std). Files in the older layout pass through unchanged."""
    if not is_file_layout(state):
        return state
    out = {to_model_name(k, kind): v for k, v in state.items()}
    out.update({k: v for k, v in own.items() if k not in out and to_file_name(k, kind) is None})
    return out


def interop_status(spec: dict) -> str | None:
    """None when timm can build this backbone by name; else why not (torchvision still loads the trunk into a
    hand-built ResNet, see docs/hub.md)."""
    if spec.get("backbone") not in TIMM_ARCH:
        return f"backbone {spec.get('backbone')!r} has no timm equivalent"
    if spec.get("small_stem"):
        return "3×3 stride-1 stem without max-pool (CIFAR variant)"
    if spec.get("width") not in (None, 64):
        return f"width {spec.get('width')} (timm and torchvision build width 64 by name)"
    return None


def timm_fields(spec: dict, num_classes: int | None, input_size: int | None) -> dict[str, Any]:
    """What timm's `create_model("hf_hub:…", pretrained=True)` reads from config.json (timm/models/_hub.py
    `_parse_model_cfg`): `architecture`, `num_classes` (top level; 0 = features only, fc = Identity),
    `model_args` and `pretrained_cfg`. Empty when timm cannot build the backbone by name."""
    if interop_status(spec) is not None:
        return {}
    arch, layers = TIMM_ARCH[spec["backbone"]]
    size = input_size or 224
    return {
        "architecture": arch,
        "model_args": {"layers": layers} if layers else {},
        "pretrained_cfg": {
            "num_classes": num_classes or 0, "input_size": [3, size, size], "mean": list(spec["mean"]),
            "std": list(spec["std"]), "interpolation": "bilinear", "crop_pct": 0.875,
            "first_conv": "conv1", "classifier": "fc",
        },
    }
