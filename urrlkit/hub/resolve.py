"""Turn any model name (run dir, model dir, .safetensors file, Hub id) into a local path, and load it.

Every `--from`, `urrl eval MODEL` and `urrlkit.load_backbone(NAME)` goes through `resolve_model`.
From the Hub only safetensors weights and JSON/Markdown are ever downloaded; pickle files are never fetched.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from urrlkit.errors import CheckpointError, HubError
from urrlkit.hub.ids import HubId, hub_settings, parse_hub_id
from urrlkit.hub.local import CARD, CONFIG, WEIGHTS, load_path, resolve_local
from urrlkit.models import Classifier, Encoder
from urrlkit.version import __version__

EVAL_RESULTS = "eval/results.json"
RECIPE = "recipe.toml"
# The only files urrlkit fetches from a model repo: never anything that could be unpickled.
DOWNLOAD_PATTERNS = [WEIGHTS, CONFIG, CARD, EVAL_RESULTS, RECIPE]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar", ".pth.tar")


class RepoUnavailable(HubError):
    """The repo could not be found (or reached): the name may as well have been a mistyped local path."""


def _short(exc: BaseException) -> str:
    """A client error on one line: its status and reason, without the multi-line advice that follows."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def download(hub_id: HubId) -> Path:
    """snapshot_download the urrlkit files of a Hub model into the standard cache; the snapshot folder."""
    s = hub_settings()
    try:
        folder = snapshot_download(
            hub_id.repo_id, revision=hub_id.revision, allow_patterns=DOWNLOAD_PATTERNS,
            endpoint=s.endpoint, cache_dir=s.cache_dir, local_files_only=s.offline,
            library_name="urrlkit", library_version=__version__,
        )
    except RevisionNotFoundError:
        raise HubError(f"{hub_id}: Hub repo {hub_id.repo_id} has no revision {hub_id.revision!r}") from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise RepoUnavailable(f"{hub_id}: no such Hub model repo (if it is private or gated, log in with "
                       "`hf auth login` or set HF_TOKEN)") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:  # incl. IncompleteSnapshotError
        if s.offline:
            raise RepoUnavailable(f"{hub_id}: not in the local Hugging Face cache and HF_HUB_OFFLINE=1 is set "
                                  f"(run `urrl pull {hub_id}` while online)") from None
        raise RepoUnavailable(f"{hub_id}: cannot reach the Hub and no complete cached copy "
                              f"({_short(exc)})") from None
    except HfHubHTTPError as exc:
        raise HubError(f"{hub_id}: Hub request failed ({_short(exc)})") from None
    path = Path(folder)
    if not (path / WEIGHTS).is_file():
        _refuse(hub_id, path, s.offline)
    if not (path / CONFIG).is_file():
        raise HubError(f"{hub_id}: not a urrlkit model (the repo has {WEIGHTS} but no {CONFIG})")
    return path


def _refuse(hub_id: HubId, snapshot: Path, offline: bool) -> None:
    """Say why a snapshot has no model.safetensors: pickle-only repos get named as such."""
    files: list[str] = []
    if not offline:
        s = hub_settings()
        try:
            # The snapshot folder name is the resolved commit, so the listing matches what was downloaded.
            files = HfApi(endpoint=s.endpoint).list_repo_files(hub_id.repo_id, revision=snapshot.name)
        except HfHubHTTPError:
            files = []
    pickles = [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        shown = ", ".join(sorted(pickles)[:3]) + (" ..." if len(pickles) > 3 else "")
        raise HubError(f"{hub_id}: offers only pickle weights ({shown}); urrlkit loads {WEIGHTS} only and "
                       "never unpickles a download (convert a checkpoint you trust with `urrl convert`)")
    raise HubError(f"{hub_id}: the repo has no {WEIGHTS}, so it is not a urrlkit model")


def resolve_model(name: str | Path, revision: str | None = None) -> Path:
    """A local path for any model name: a model directory, or a .safetensors file.

    Order: an existing local path wins (run dir → its `model/`, model dir, .safetensors file); otherwise a
    Hub id (`hf-hub:org/name[@rev]` or `org/name`) is fetched into (offline: found in) the standard cache."""
    text = str(name)
    if not text.startswith("hf-hub:"):
        local = resolve_local(name)
        if local is not None:
            if revision:
                raise HubError(f"{name}: --revision applies to Hub ids, not to local paths")
            return local
    try:
        hub_id = parse_hub_id(text, revision)
    except HubError as exc:
        raise HubError(f"{exc}{_local_note(text)}") from None
    if hub_id is None:
        raise CheckpointError(f"{name}: no run directory, model directory or .safetensors file here, "
                              "and not a Hub id (org/name or hf-hub:org/name[@revision])")
    try:
        return download(hub_id)
    except RepoUnavailable as exc:
        raise HubError(f"{exc}{_local_note(text)}") from None


def _local_note(text: str) -> str:
    """A name without "hf-hub:" was first tried as a local path; a mistyped path (runs/quickstrat) has a Hub
    id's shape, so when the Hub cannot supply it either, say both."""
    if text.startswith("hf-hub:"):
        return ""
    return f"; nor is there a run directory, model directory or .safetensors file at {text}"


def load_model(name: str | Path, revision: str | None = None) -> Encoder | Classifier:
    """Load an Encoder or Classifier (eval mode, CPU) from a run dir, model dir, .safetensors file or Hub id.

    It takes float RGB images in [0, 1] (NCHW), normalisation inside; `model.config` is its config.json."""
    return load_path(resolve_model(name, revision))


def load_backbone(name: str | Path, revision: str | None = None) -> Encoder:
    """The encoder f of any model (a classifier's head is dropped).

    Interface: `f(x)` with x a float tensor (N, 3, H, W) in [0, 1] returns features (N, f.feature_dim);
    `f.spec` rebuilds the architecture, `f.config` is the model's config.json."""
    model = load_model(name, revision)
    enc = model.encoder if isinstance(model, Classifier) else model
    enc.config = getattr(model, "config", {})
    return enc
