"""`timm:<name>`: any model of the timm library (huggingface/pytorch-image-models) as the encoder.

Validation stays torch-free and fast (`urrl recipe validate` imports neither timm nor torch), so a name is only
checked for its shape there (timm's names: lower-case letters, digits and "_", an optional ".tag" picking a
pretrained config); `build` checks it against `timm.list_models()` and names `model.backbone` with the closest
name when it is unknown. `build` first builds the model on the meta device (no memory) to count its parameters
and refuse one over MAX_PARAMS, then builds it for real with `num_classes=0`: the trunk returns timm's pooled
pre-logits features, whose size is the encoder's feature_dim; mean/std come from the model's pretrained config.

`pretrained = true` loads timm's own weights for the name (from its `hf_hub_id` repo on the Hub, through
huggingface_hub), safetensors only: urrlkit downloads the .safetensors file itself and hands timm the local file,
so timm's loader never falls back to a pickle `.bin`/`.pth` or a URL download; weights offered only that way are
refused with one line naming `model.pretrained`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from urrlkit.config.model import BackboneSettings
from urrlkit.config.sections import _error_at
from urrlkit.registry import nearest

if TYPE_CHECKING:
    from torch import nn

    from urrlkit.models import Encoder

PREFIX = "timm:"
# timm's model names and pretrained tags ("vit_small_patch16_224.augreg_in21k"); no ":" or "/", so no
# `hf_hub:` or local-dir name can reach timm, which would load whatever those hold.
NAME = re.compile(r"[a-z0-9][a-z0-9_]*(\.[a-z0-9_]+)?")
# timm's largest ImageNet models (ViT-gigantic: 1.8 G parameters, 7 GB in float32) fit; a model_args asking for
# more (an embed_dim of 10^5) is refused before anything is allocated. The ResNets' bound is MAX_WIDTH.
MAX_PARAMS = 2_000_000_000
MAX_IMAGE_SIDE = 2048
MAX_LIST = 64
# create_model arguments that urrlkit sets itself, or that would load files or change what the trunk returns.
RESERVED = {
    "pretrained": "use model.pretrained", "num_classes": "the encoder has no head (num_classes = 0)",
    "global_pool": "use model.global_pool", "pretrained_cfg": "not settable", "pretrained_cfg_overlay":
    "not settable", "checkpoint_path": "urrlkit loads no checkpoint through timm", "cache_dir": "not settable",
    "features_only": "the encoder returns pooled features", "in_chans": "images are RGB (3 channels)",
    "scriptable": "not settable", "exportable": "not settable", "no_jit": "not settable",
}
Scalar = bool | int | float | str | None


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, bool | int | float) or (isinstance(v, str) and len(v) <= 64)


class Timm(BackboneSettings):
    """A timm model (`timm.create_model(name, num_classes=0, **model_args)`): features of its num_features."""

    backbone: str = Field(description="timm:<model name>, any of timm.list_models() (optionally with a "
                          "pretrained tag, name.tag)")
    pretrained: bool = Field(False, description="start from timm's own weights for the name (safetensors from "
                             "the Hub only; never a pickle file)")
    model_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of "
                                       "timm.create_model: numbers, strings, booleans or lists of them (img_size, "
                                       "patch_size, depths, dims, drop_path_rate, ...)")
    global_pool: str | None = Field(None, min_length=1, max_length=16, pattern=r"^[a-z]+$",
                                    description="timm's pooling of the features (avg, max, token, ...; None: "
                                    "the model's default)")

    prefixed = True

    @field_validator("backbone")
    @classmethod
    def _name(cls, v: str) -> str:
        rest = v.removeprefix(PREFIX)
        if not v.startswith(PREFIX) or not NAME.fullmatch(rest):
            raise ValueError(f"{v!r} is not timm:<model name> (a timm name: lower-case letters, digits and '_', "
                             "optionally .tag, e.g. timm:vit_small_patch16_224)")
        return v

    @model_validator(mode="after")
    def _args(self) -> Timm:
        for key, value in self.model_args.items():
            where = f"model_args.{key}"
            if not key.isidentifier():
                raise _error_at(where, "not a keyword argument name")
            if key in RESERVED:
                raise _error_at(where, f"not allowed here ({RESERVED[key]})")
            items = value if isinstance(value, list) else [value]
            if len(items) > MAX_LIST or not all(_scalar(x) for x in items):
                raise _error_at(where, f"{value!r}: expected a number, string (≤ 64 characters), boolean or a "
                                f"list of at most {MAX_LIST} of them")
        size = self.model_args.get("img_size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)
                                 or not 1 <= size <= MAX_IMAGE_SIDE):
            raise _error_at("model_args.img_size", f"{size!r}: expected the side of square images, an integer "
                            f"in 1..{MAX_IMAGE_SIDE}")
        return self

    # ------------------------------------------------------------------------------------- torch-free hooks

    @property
    def name(self) -> str:
        """timm's name, with its tag."""
        return self.backbone.removeprefix(PREFIX)

    @property
    def architecture(self) -> str:
        """timm's name without the tag."""
        return self.name.partition(".")[0]

    def default_input_size(self) -> int | None:
        # model_args.img_size is all that is known without importing timm; the built encoder's `input_size`
        # has timm's own answer (its pretrained config's fixed input size).
        size = self.model_args.get("img_size")
        return size if isinstance(size, int) and not self.model_args.get("dynamic_img_size") else None

    def describe(self) -> str:
        args = dict(self.model_args)
        parts = [f"img {args.pop('img_size')}"] if "img_size" in args else []
        parts += [f"{k} {v}" for k, v in args.items()]
        parts += [f"global_pool {self.global_pool}"] if self.global_pool else []
        parts += ["timm's pretrained weights"] if self.pretrained else []
        return self.backbone + (f" ({', '.join(parts)})" if parts else "")

    def without_weights(self) -> Timm:
        return self.model_copy(update={"pretrained": False}) if self.pretrained else self

    def kwargs(self) -> dict[str, Any]:
        """The create_model keyword arguments besides the name and `pretrained`."""
        return {**self.model_args, **({"global_pool": self.global_pool} if self.global_pool else {})}

    # ------------------------------------------------------------------------------------------ torch hooks

    def build(self) -> Encoder:
        import timm

        from urrlkit.models.backbones import Encoder

        probe = self._probe()
        cfg = _pretrained_cfg(probe)
        feature_dim = _feature_dim(probe, self.default_input_size() or cfg["input_size"][-1])
        model = self._create(_local_weights(self.name, cfg) if self.pretrained else None)
        data = timm.data.resolve_model_data_config(model)
        classifier = cfg.get("classifier") or "head"
        fixed = bool(cfg.get("fixed_input_size")) and not self.model_args.get("dynamic_img_size")
        side = int(self.default_input_size() or data["input_size"][-1])
        if feature_dim is None:  # no meta forward: timm's own count of the pre-logits features
            feature_dim = int(getattr(model, "head_hidden_size", 0) or getattr(model, "num_features", 0))
        enc = Encoder(model, feature_dim, tuple(data["mean"]), tuple(data["std"]),
                      head_name=classifier if isinstance(classifier, str) else classifier[0],
                      input_size=side if fixed else None)
        enc.spec = {**self.model_dump(exclude={"feature_dim"}), "mean": list(data["mean"]),
                    "std": list(data["std"]), "feature_dim": enc.feature_dim}
        return enc

    def _create(self, weights: dict[str, Any] | None = None) -> nn.Module:
        """timm's model (no head), with the pretrained weights of the overlay `weights` when given."""
        import timm

        from urrlkit.models.backbones import SettingError

        try:
            return timm.create_model(self.name, pretrained=weights is not None, pretrained_cfg_overlay=weights,
                                     num_classes=0, **self.kwargs())
        except (TypeError, ValueError, AssertionError, RuntimeError, KeyError) as exc:
            # timm's factories reject bad arguments with any of these; one line naming the table
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            field = "model_args" if self.model_args or not self.global_pool else "global_pool"
            raise SettingError(field, f"timm cannot build {self.name} with {self.kwargs()} ({first})") from None

    def _probe(self) -> nn.Module:
        """The model on the meta device: its name checked, its size bounded, nothing allocated."""
        import timm
        import torch

        from urrlkit.models.backbones import SettingError

        if not timm.is_model(self.architecture):
            raise SettingError("backbone", f"unknown timm model {self.architecture!r}"
                               f"{nearest(self.architecture, timm.list_models())}")
        if self.name != self.architecture and self.name not in timm.list_models(self.name, pretrained=True):
            tags = timm.list_models(f"{self.architecture}.*", pretrained=True)
            raise SettingError("backbone", f"timm has no pretrained tag {self.name!r}{nearest(self.name, tags)}")
        with torch.device("meta"):
            probe = self._create()
        n = sum(p.numel() for p in probe.parameters())
        if n > MAX_PARAMS:
            raise SettingError("model_args", f"{self.name} with {self.kwargs()} has {n:,} parameters; at most "
                               f"{MAX_PARAMS:,} are built")
        return probe

    def interop_status(self) -> str | None:
        return None

    def timm_fields(self, num_classes: int, input_size: int | None) -> dict[str, Any]:
        """timm's architecture and our model_args; the pretrained config of the name, less where timm would
        fetch its own weights from (hf_hub_id, url, file: timm reads the weights from the repo itself)."""
        import torch

        with torch.device("meta"):
            cfg = _pretrained_cfg(self._create())
        size = self.default_input_size() or input_size or cfg["input_size"][-1]
        keep = ("fixed_input_size", "interpolation", "crop_pct", "crop_mode", "pool_size", "first_conv",
                "classifier")
        return {
            "architecture": self.architecture,
            "model_args": self.kwargs(),
            "pretrained_cfg": {**{k: cfg[k] for k in keep if cfg.get(k) is not None},
                               "input_size": [3, size, size]},
        }


def _pretrained_cfg(model: nn.Module) -> dict[str, Any]:
    """timm's pretrained config of a model it built (every timm model has one, as a dict)."""
    return dict(getattr(model, "pretrained_cfg", None) or {})


def _feature_dim(probe: nn.Module, side: int) -> int | None:
    """The size of the trunk's output for one image on the meta device; None when a meta forward is not
    supported by the model (the caller falls back to timm's head_hidden_size)."""
    import torch

    from urrlkit.models.backbones import SettingError

    try:
        with torch.no_grad():
            out = probe(torch.empty(1, 3, side, side, device="meta"))
    except (NotImplementedError, RuntimeError):
        return None
    if out.dim() != 2:
        raise SettingError("global_pool", f"the trunk returns features of shape {list(out.shape)}, not one "
                           "vector per image; choose a pooling")
    return int(out.shape[1])


def _safetensors_name(filename: str) -> str:
    """The safetensors file timm itself prefers to `filename` (timm/models/_hub.py `_get_safe_alternatives`)."""
    if filename.endswith(".safetensors"):
        return filename
    known = {"pytorch_model.bin": "model.safetensors", "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    return known.get(filename, filename.rsplit(".", 1)[0] + ".safetensors")


def _local_weights(name: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The pretrained_cfg overlay that makes timm load the safetensors file urrlkit downloaded (its `file`),
    with every other source cleared."""
    from urrlkit.models.backbones import SettingError

    hub_id = cfg.get("hf_hub_id")
    if cfg.get("custom_load"):
        raise SettingError("pretrained", f"timm loads the weights of {name} with a loader of its own, not from "
                           "safetensors; urrlkit does not load them")
    if not hub_id:
        raise SettingError("pretrained", f"timm offers the weights of {name} only as a download that is not "
                           "safetensors on the Hub (a pickle file); urrlkit does not load them")
    repo, _, revision = str(hub_id).partition("@")
    filename = _safetensors_name(cfg.get("hf_hub_filename") or "pytorch_model.bin")
    return {"file": _download(name, repo, filename, revision or None), "source": None, "hf_hub_id": None,
            "hf_hub_filename": None, "url": None, "state_dict": None}


def _download(name: str, repo: str, filename: str, revision: str | None) -> str:
    """timm's safetensors file from the Hub into the standard cache, as timm itself would fetch it: with
    huggingface_hub's endpoint, cache, token and offline mode (HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE). A backbone
    sits below urrlkit.hub (tests/test_architecture.py), so this is huggingface_hub's call itself."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from urrlkit.models.backbones import SettingError
    from urrlkit.version import __version__

    where = f"timm's weights for {name}: {repo}/{filename}" + (f"@{revision}" if revision else "")
    try:
        return str(hf_hub_download(repo, filename, revision=revision, library_name="urrlkit",
                                   library_version=__version__))
    except RemoteEntryNotFoundError:
        why = "the repo has no such file (urrlkit loads safetensors weights only, never a pickle .bin/.pth)"
    except RevisionNotFoundError:
        why = "no such revision"
    except (RepositoryNotFoundError, GatedRepoError):
        why = "no such Hub repo (if it is private or gated, log in with `hf auth login` or set HF_TOKEN)"
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        why = ("not in the local Hugging Face cache and HF_HUB_OFFLINE=1 is set" if constants.HF_HUB_OFFLINE else
               f"cannot reach the Hub and no cached copy ({_first_line(exc)})")
    except HfHubHTTPError as exc:
        why = f"Hub request failed ({_first_line(exc)})"
    raise SettingError("pretrained", f"{where}: {why}")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
