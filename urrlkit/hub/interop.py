"""Weights other libraries load: model.safetensors holds the trunk's own tensor names (timm's for a `timm:`
model, torchvision's for a ResNet, which timm's ResNet shares), a Classifier's head under the name the trunk's
library gives its classifier (the encoder's `head_name`: "fc" for a ResNet, "head" for a ViT, "head.fc" for a
ConvNeXt), and config.json carries the fields timm's `hf_hub:` loader reads, from the backbone's own
`timm_fields` hook (urrlkit/config/model.py). Nothing here knows any backbone.

The in-memory model (Normalize + trunk [+ head]) has prefixed names; these functions translate at the file
boundary, so timm and torchvision users load our files without renaming, and older files (saved with the
prefixed names) still load. Normalisation is not a tensor in the file: its mean/std live in config.json
(`encoder.mean/std`, and timm's `pretrained_cfg.mean/std`), and a timm/torchvision user applies them.
"""

from __future__ import annotations

from typing import Any

import torch

from urrlkit.models.backbones import spec_settings

TRUNK = "trunk."
NORMALIZE = "normalize."
# The older prefixed layout saved the whole state dict, normalisation buffers included; the file layout never
# holds them. (A test on a `trunk.`/`encoder.` prefix would misread a timm model with a module of that name.)
_OLD_LAYOUT_MARKS = ("normalize.mean", "encoder.normalize.mean")


def _prefix(kind: str) -> str:
    return "encoder." + TRUNK if kind == "classifier" else TRUNK


def to_file_name(name: str, kind: str, head: str = "fc") -> str | None:
    """The file name of an in-memory tensor name; None for the normalisation buffers (kept in config.json)."""
    if kind == "classifier" and name.startswith("head."):
        return f"{head}.{name[len('head.'):]}"
    prefix = _prefix(kind)
    return name[len(prefix):] if name.startswith(prefix) else None


def to_model_name(name: str, kind: str, head: str = "fc") -> str:
    if kind == "classifier" and name.startswith(head + "."):
        return "head." + name[len(head) + 1:]
    return _prefix(kind) + name


def is_file_layout(names: Any) -> bool:
    """True for the trunk's own names, False for the older prefixed layout."""
    return not any(n in _OLD_LAYOUT_MARKS for n in names)


def file_state(state: dict[str, torch.Tensor], kind: str, head: str = "fc") -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in state.items():
        key = to_file_name(name, kind, head)
        if key is not None:
            out[key] = tensor
    return out


def model_state(state: dict[str, torch.Tensor], kind: str, own: dict[str, torch.Tensor],
                head: str = "fc") -> dict[str, torch.Tensor]:
    """A file's tensors under the model's names; the normalisation buffers come from `own` (the model as built
    from config.json, whose spec holds mean/std). Files in the older layout pass through unchanged."""
    if not is_file_layout(state):
        return state
    out = {to_model_name(k, kind, head): v for k, v in state.items()}
    out.update({k: v for k, v in own.items() if k not in out and to_file_name(k, kind, head) is None})
    return out


def interop_status(spec: dict) -> str | None:
    """None when timm builds this backbone by name; else why not (the backbone's `interop_status`)."""
    try:
        settings = spec_settings(spec)
    except ValueError as exc:
        return f"backbone not installed or not valid here ({exc})"
    return settings.interop_status()


def timm_fields(spec: dict, num_classes: int | None, input_size: int | None, head: str) -> dict[str, Any]:
    """What timm's `create_model("hf_hub:…", pretrained=True)` reads from config.json (timm/models/_hub.py
    `load_model_config_from_hf` / `_parse_model_cfg`): `architecture`, `num_classes` (top level; 0 = features
    only, the classifier an Identity), `model_args` and `pretrained_cfg`, whose mean/std are the model's own
    normalisation and whose `classifier` names the head as the file does. Empty when timm cannot build it."""
    if interop_status(spec) is not None:
        return {}
    fields = spec_settings(spec).timm_fields(num_classes or 0, input_size)
    if not fields:
        return {}
    cfg = {**fields.get("pretrained_cfg", {}), "num_classes": num_classes or 0, "mean": list(spec["mean"]),
           "std": list(spec["std"]), "classifier": head}
    return {**fields, "num_classes": num_classes or 0, "pretrained_cfg": cfg}
