"""Save and load urrlkit models (safetensors + config.json + card), locally and on the Hugging Face Hub.

A model directory holds:
  model.safetensors  weights under torchvision's ResNet names (conv1, bn1, layer1…, and fc for a Classifier's
                     head; no normalisation buffers), so torchvision and timm load them unchanged; files in
                     the older layout (`trunk.*`, `encoder.*` + `head.*`) still load. Its metadata carries a
                     copy of config.json under `urrlkit_config` (urrlkit.hub.interop)
  config.json        {"urrlkit_version", "kind": "encoder"|"classifier", "encoder": spec, "num_classes" (0 for
                      an encoder), "feature_dim", "head", "input", "input_size", "recipe", "recipe_hash", ...}
                     plus timm's "architecture", "model_args", "pretrained_cfg" where timm builds the backbone
  README.md          the model card (urrlkit/hub/cards/model_card.md.j2)
A pushed repo adds `eval/results.json` (from `urrl eval`) and the run's `recipe.toml` when present.

Names accepted wherever a model is expected (`--from`, `urrl eval`, `load_backbone`): a run directory, a
model directory, a `.safetensors` file, or a Hub id `hf-hub:org/name[@revision]` / `org/name` (local paths
win).
"""

from urrlkit.hub.convert import run_convert
from urrlkit.hub.ids import HubId, hub_settings, parse_hub_id
from urrlkit.hub.local import (
    CARD,
    CONFIG,
    WEIGHTS,
    atomic_write_bytes,
    load_local,
    load_local_file,
    load_path,
    load_weights,
    model_config,
    read_config,
    resolve_local,
    save_model,
    save_weights,
)
from urrlkit.hub.resolve import download, load_backbone, load_model, resolve_model
from urrlkit.hub.share import build_upload_folder, run_pull, run_push

__all__ = [
    "CARD",
    "CONFIG",
    "WEIGHTS",
    "HubId",
    "atomic_write_bytes",
    "build_upload_folder",
    "download",
    "hub_settings",
    "load_backbone",
    "load_local",
    "load_local_file",
    "load_model",
    "load_path",
    "load_weights",
    "model_config",
    "parse_hub_id",
    "read_config",
    "resolve_local",
    "resolve_model",
    "run_convert",
    "run_pull",
    "run_push",
    "save_model",
    "save_weights",
]
