"""Local model directories: atomic writes, safetensors weights, config.json (format: see `urrlkit.hub`).

`save_model` also stores config.json inside the safetensors metadata (key `urrlkit_config`), so a lone
`.safetensors` file copied out of its directory still loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from urrlkit.engine.statefile import atomic_save_file, atomic_write_bytes
from urrlkit.engine.untrusted import parse_json, read_json
from urrlkit.errors import CheckpointError
from urrlkit.hub.interop import file_state, is_file_layout, model_state, timm_fields, to_file_name
from urrlkit.models import Classifier, Encoder, check_num_classes, check_spec, encoder_from_spec
from urrlkit.version import __version__

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
META_CONFIG = "urrlkit_config"
MAX_CONFIG_BYTES = 16 << 20  # a recipe and a card summary fit in a few kB


def save_weights(module: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Atomically save a module's state dict as safetensors."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_save_file(state, path, metadata or {"format": "pt"})


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else, or a corrupt file, is a CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    check_finite(state, path)
    return state


def check_finite(state: dict[str, torch.Tensor], source: Path) -> None:
    """Refuse weights with a NaN or infinity (an all-NaN file evaluates to chance without a word otherwise);
    checked on the tensors already loaded, so the file is read once."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{source}: tensor {key} has {bad} of {value.numel()} values NaN or infinite; "
                                  "refusing weights that are not finite")


def model_config(model: Encoder | Classifier, recipe: Any = None, **extra: Any) -> dict[str, Any]:
    clf = model if isinstance(model, Classifier) else None
    enc = model.encoder if isinstance(model, Classifier) else model
    is_clf = clf is not None
    cfg: dict[str, Any] = {
        "urrlkit_version": __version__,
        "kind": "classifier" if is_clf else "encoder",
        "encoder": enc.spec,
        # 0 for an encoder (features only): timm's convention, which its hub loader needs (urrlkit.hub.interop)
        "num_classes": clf.head.out_features if clf is not None else 0,
        # Redundant with `encoder`, but spelled out so a reader of config.json on the Hub sees the interface.
        "feature_dim": enc.feature_dim,
        "head": {"type": "linear", "in_features": enc.feature_dim, "out_features": clf.head.out_features}
        if clf is not None else None,
        "input": {"layout": "NCHW RGB float", "range": [0.0, 1.0], "normalization": "inside the model",
                  "mean": enc.spec.get("mean"), "std": enc.spec.get("std")},
    }
    if recipe is not None:
        cfg["recipe"] = recipe.to_dict()
        cfg["recipe_hash"] = recipe.digest()
        cfg["input_size"] = recipe.data.image_size
    # timm's hub loader reads these beside ours (urrlkit.hub.interop); none of our own fields is renamed.
    cfg.update(timm_fields(enc.spec, cfg["num_classes"], cfg.get("input_size"), head_name(model)))
    cfg.update(extra)
    return cfg


def head_name(model: nn.Module) -> str:
    """The file name of a Classifier's head: what the trunk's library calls its classifier (Encoder.head_name)."""
    enc = model.encoder if isinstance(model, Classifier) else model
    return str(getattr(enc, "head_name", "fc"))


def save_model(model: Encoder | Classifier, directory: Path, recipe: Any = None, **extra: Any) -> Path:
    """Write model.safetensors and config.json into `directory` (each atomically)."""
    directory = Path(directory)
    cfg = model_config(model, recipe, **extra)
    blob = json.dumps(cfg, sort_keys=True)
    # the trunk's own key names (urrlkit.hub.interop), so timm and torchvision load the file without renaming
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save_file(file_state(state, cfg["kind"], head_name(model)), directory / WEIGHTS,
                     {"format": "pt", META_CONFIG: blob})
    atomic_write_bytes(directory / CONFIG, json.dumps(cfg, indent=2, sort_keys=True).encode())
    return directory


def resolve_local(name: str | Path) -> Path | None:
    """The model directory (or weights file) for a run dir, model dir or .safetensors path; else None."""
    p = Path(name).expanduser()
    if p.is_file():
        return p
    if (p / CONFIG).is_file():
        return p
    if (p / "model" / CONFIG).is_file():
        return p / "model"
    return None


def read_config(directory: Path) -> dict[str, Any]:
    """config.json of a model directory, through the bounded reader (urrlkit.engine.untrusted): a downloaded or
    shared directory's config is a file this process did not write."""
    cfg = read_json(directory / CONFIG, "model config", max_bytes=MAX_CONFIG_BYTES)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{directory / CONFIG}: not a urrlkit model config (expected a JSON object)")
    return cfg


def _build(cfg: dict[str, Any], source: Path, weights: Path | None = None) -> Encoder | Classifier:
    """The model `cfg` describes. Its fields are checked against bounds first, then it is built on the meta
    device (no memory) and, given `weights`, every tensor shape compared with the safetensors header, so a
    config asking for a huge model, or weights of another one, fails before anything is allocated."""
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{source}: not a urrlkit model config (expected a JSON object)")
    kind = cfg.get("kind", "encoder")
    try:
        if "encoder" not in cfg:
            raise ValueError("encoder: missing")
        if kind not in ("encoder", "classifier"):
            raise ValueError(f"kind: {kind!r} must be 'encoder' or 'classifier'")
        check_spec(cfg["encoder"])
        n_cls = check_num_classes(cfg.get("num_classes")) if kind == "classifier" else 0
    except ValueError as exc:
        raise CheckpointError(f"{source}: config {exc}") from None

    def make() -> Encoder | Classifier:
        try:
            enc = encoder_from_spec(cfg["encoder"])
        except ValueError as exc:  # a setting only the build can check (an unknown timm model name)
            raise CheckpointError(f"{source}: config {exc}") from None
        return Classifier(enc, n_cls) if kind == "classifier" else enc

    if weights is not None:
        with torch.device("meta"):
            meta = make()
            expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
            dtypes = {k: v.dtype for k, v in meta.state_dict().items()}
        check_header(weights, expected, kind, head_name(meta), dtypes)
    return make()


def _dtype_class(name: str) -> str:
    """A safetensors dtype name (F32, BF16, I64, BOOL, F8_E4M3, …) as the class load_state_dict can convert
    within: floating point, integer or boolean."""
    return "floating-point" if name.startswith(("F", "BF")) else "boolean" if name == "BOOL" else "integer"


def _torch_class(dtype: torch.dtype) -> str:
    return "floating-point" if dtype.is_floating_point else "boolean" if dtype == torch.bool else "integer"


def check_header(path: Path, expected: dict[str, tuple[int, ...]], kind: str | None = None,
                 head: str = "fc", dtypes: dict[str, torch.dtype] | None = None) -> None:
    """Compare the tensor names and shapes in a safetensors header with `expected` (nothing is loaded). With
    `kind`, a file in the trunk's own layout is compared under its own names, a Classifier's head under `head`
    (urrlkit.hub.interop). With `dtypes` (the model's), each tensor's dtype must be of the same class:
    load_state_dict casts F16 into an F32 parameter, but F32 bytes relabelled I32 would cast to garbage."""
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            slices = {k: fh.get_slice(k) for k in fh.keys()}  # noqa: SIM118
            found = {k: tuple(s.get_shape()) for k, s in slices.items()}
            found_dtypes = {k: str(s.get_dtype()) for k, s in slices.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    dtypes = dtypes or {}
    if kind is not None and is_file_layout(found):
        renamed = [(k, to_file_name(k, kind, head), shape) for k, shape in expected.items()]
        dtypes = {new: dtypes[old] for old, new, _ in renamed if new is not None and old in dtypes}
        expected = {new: shape for _, new, shape in renamed if new is not None}
    for key, shape in expected.items():
        if key not in found:
            raise CheckpointError(f"{path}: weights do not match the config (tensor {key} is missing)")
        if found[key] != shape:
            raise CheckpointError(f"{path}: weights do not match the config (tensor {key} has shape "
                                  f"{list(found[key])}, the config's model needs {list(shape)})")
        if key in dtypes and _dtype_class(found_dtypes[key]) != _torch_class(dtypes[key]):
            raise CheckpointError(f"{path}: weights do not match the config (tensor {key} is "
                                  f"{found_dtypes[key]}, the config's model needs a {_torch_class(dtypes[key])} "
                                  f"tensor ({str(dtypes[key]).removeprefix('torch.')}))")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise CheckpointError(f"{path}: weights do not match the config (unexpected tensor {extra[0]})")


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    kind = "classifier" if isinstance(model, Classifier) else "encoder"
    state = model_state(state, kind, model.state_dict(), head_name(model))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{source}: weights do not match the config ({first})") from None


def load_local(path: Path) -> Encoder | Classifier:
    """Load a local model directory (config + weights)."""
    cfg = read_config(path)
    model = _build(cfg, path / CONFIG, path / WEIGHTS)
    _load_state(model, load_weights(path / WEIGHTS), path / WEIGHTS)
    model.config = cfg
    return model.eval()


def load_path(local: Path) -> Encoder | Classifier:
    """Load a local model directory or .safetensors file (as `resolve_local` returns them)."""
    if local.is_file():
        if local.suffix != ".safetensors":
            raise CheckpointError(f"{local}: only .safetensors weights are loaded (import other checkpoints "
                                  "with `urrl convert`)")
        return load_local_file(local)
    return load_local(local)


def file_config(path: Path) -> dict[str, Any]:
    """config.json beside a .safetensors file, else the copy `save_model` put in the file's metadata."""
    if (path.parent / CONFIG).is_file():
        return read_config(path.parent)
    try:
        with safe_open(str(path), framework="pt") as fh:
            blob = (fh.metadata() or {}).get(META_CONFIG)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if blob is None:
        raise CheckpointError(f"{path}: no config.json beside it and no urrlkit config in its metadata")
    return parse_json(blob, path, f"urrlkit config in its metadata ({META_CONFIG})", max_bytes=MAX_CONFIG_BYTES)


def load_local_file(path: Path) -> Encoder | Classifier:
    cfg = file_config(path)
    model = _build(cfg, path, path)
    _load_state(model, load_weights(path), path)
    model.config = cfg
    return model.eval()


