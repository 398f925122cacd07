"""`urrl push` and `urrl pull`: one commit up (weights, config, card, eval results), the standard cache down.

Authentication is entirely huggingface_hub's (`hf auth login` or HF_TOKEN): urrlkit never reads, prints or
writes a token, so none can reach a log, card or uploaded file.
"""

from __future__ import annotations

import errno
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import httpx

from urrlkit.engine.writable import check_writable_dir
from urrlkit.errors import CheckpointError, HubError
from urrlkit.hub.card import card_summary, find_eval_results, read_results, render_card
from urrlkit.hub.ids import HubId, hub_settings, require_hub_id
from urrlkit.hub.interop import interop_status
from urrlkit.hub.local import CARD, CONFIG, WEIGHTS, load_local, read_config, resolve_local
from urrlkit.hub.resolve import EVAL_RESULTS, RECIPE, _short, download
from urrlkit.version import __version__


def model_dir_of(path: Path) -> Path:
    """The model directory to push: `path` itself, or a run directory's `model/`."""
    local = resolve_local(path)
    if local is None or local.is_file():
        raise CheckpointError(f"{path}: not a run directory or model directory (no {CONFIG} here or in "
                              "model/)")
    if not (local / WEIGHTS).is_file():
        raise CheckpointError(f"{local}: no {WEIGHTS} to push")
    return local


def build_upload_folder(path: Path, repo_id: str, dest: Path) -> list[str]:
    """Write exactly what `urrl push` uploads into `dest`; the relative file names, sorted."""
    model_dir = model_dir_of(path)
    load_local(model_dir)  # refuse to publish weights that do not load against their own config
    config = read_config(model_dir)
    results_path = find_eval_results(model_dir)
    results = read_results(results_path)
    note = ""
    if results_path is not None and results_path.parent.parent.name == "linear":
        note = "Measured with a linear classifier on the frozen encoder (the paper's linear protocol)."
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / WEIGHTS, dest / WEIGHTS)
    shutil.copyfile(model_dir / CONFIG, dest / CONFIG)  # byte-identical: the pulled config is the saved one
    if results_path is not None:
        (dest / EVAL_RESULTS).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(results_path, dest / EVAL_RESULTS)
    run_recipe = model_dir.parent / RECIPE
    if run_recipe.is_file():
        shutil.copyfile(run_recipe, dest / RECIPE)
    render_card(repo_id, config, results, note).save(dest / CARD)
    print(interop_line(config, repo_id))
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def interop_line(config: dict, repo_id: str) -> str:
    """Which other libraries load these weights by name (docs/hub.md, "Load with timm or torchvision")."""
    why = interop_status(config.get("encoder") or {})
    if why is None and "architecture" in config:
        backbone = config["encoder"]["backbone"]
        # a ResNet is named as torchvision names it (urrlkit/backbones/resnet.py); torchvision loads it too
        tv = f" and torchvision.models.{backbone}()" if backbone == config["architecture"] else ""
        return (f'interop: timm.create_model("hf_hub:{repo_id}", pretrained=True){tv} load these weights '
                "(apply the config's mean/std to inputs)")
    return (f"interop: timm cannot build this backbone by name ({why or 'saved before urrlkit wrote timm fields'}); "
            "the model card says how to build it for these weights")


def _push_error(hub_id: HubId, exc: Exception) -> HubError:
    status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else 0
    if status in (401, 403):
        return HubError(f"{hub_id.repo_id}: not allowed to write there; log in with `hf auth login` or set "
                        "HF_TOKEN to a token with write access")
    if isinstance(exc, HfHubHTTPError):
        return HubError(f"{hub_id.repo_id}: push failed ({_short(exc)})")
    return HubError(f"{hub_id.repo_id}: cannot reach the Hub ({_short(exc)})")


def run_push(path: Path, repo: str, *, private: bool = False, revision: str | None = None,
             dry_run: Path | None = None) -> str:
    """Create the repo if needed and upload weights, config, card and eval results in one commit.

    With `dry_run`, write that folder to DIR instead and upload nothing. Returns the commit URL or DIR."""
    hub_id = require_hub_id(repo, revision)
    path = Path(path)
    if dry_run is not None:
        return _dry_run(path, hub_id, Path(dry_run))
    settings = hub_settings()
    if settings.offline:
        raise HubError(f"{hub_id.repo_id}: cannot push while HF_HUB_OFFLINE=1 is set")
    with tempfile.TemporaryDirectory(prefix="urrl-push-") as tmp:
        files = build_upload_folder(path, hub_id.repo_id, Path(tmp))
        api = HfApi(endpoint=settings.endpoint, library_name="urrlkit", library_version=__version__)
        try:
            api.create_repo(hub_id.repo_id, private=True if private else None, exist_ok=True)
            if hub_id.revision and hub_id.revision != "main":
                api.create_branch(hub_id.repo_id, branch=hub_id.revision, exist_ok=True)
            info = api.upload_folder(
                repo_id=hub_id.repo_id, folder_path=tmp, revision=hub_id.revision,
                commit_message=f"Upload {path.name} with urrlkit {__version__}",
                # A re-push without eval results must not leave the previous results.json behind.
                delete_patterns=[EVAL_RESULTS] if EVAL_RESULTS not in files else None,
            )
        except (HfHubHTTPError, httpx.HTTPError, OfflineModeIsEnabled) as exc:
            raise _push_error(hub_id, exc) from None
    print(f"pushed {', '.join(files)} to {hub_id} in one commit: {info.commit_url}")
    return str(info.commit_url)


def _dry_run(path: Path, hub_id: HubId, dest: Path) -> str:
    """Write the upload folder to `dest`: built in a temporary sibling and renamed into place, so a full disk
    or a read-only folder leaves `dest` as it was (absent or empty) and is one line naming the file."""
    check_writable_dir(dest, "--dry-run")  # before the weights are loaded and checked
    if dest.is_dir() and any(dest.iterdir()):
        raise CheckpointError(f"{dest}: --dry-run folder exists and is not empty")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    except OSError as exc:
        raise CheckpointError(f"--dry-run {dest}: cannot create the folder ({exc.strerror})") from None
    try:
        files = build_upload_folder(path, hub_id.repo_id, stage)
        if dest.is_dir():
            dest.rmdir()  # empty (checked above); rename does not replace a folder
        stage.rename(dest)
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror
        raise CheckpointError(f"--dry-run {dest}: cannot write ({reason}); no partial folder was left") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(f"dry run: would upload to {hub_id} in one commit: {', '.join(files)}")
    print(f"folder written to {dest}")
    return str(dest)


def run_pull(repo: str, *, revision: str | None = None) -> Path:
    """Download a model into the standard Hugging Face cache; print its local path and card summary."""
    hub_id = require_hub_id(repo, revision)
    folder = download(hub_id)
    print(f"{hub_id} -> {folder}")
    for line in card_summary(folder):
        print(f"  {line}")
    print(f'  load: urrlkit.load_backbone("hf-hub:{hub_id}")')
    return folder
