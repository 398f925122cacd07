"""The `urrl` command line: one thin function per command. Each parses options, loads the recipe and calls
a runner; user errors become one line on stderr and exit code 2 (`--debug` shows the traceback)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from rich.console import Console

from urrlkit.engine.allocator import default_thread_env
from urrlkit.errors import UrrlError
from urrlkit.version import __version__

if TYPE_CHECKING:  # the CLI imports the recipe models lazily (start-up time)
    from urrlkit.config import Recipe

# OpenMP reads these once, when torch loads it: set them before that (a program that imported torch before
# this module has already chosen).
if "torch" not in sys.modules:
    default_thread_env(os.environ)

app = typer.Typer(
    name="urrl",
    help="Unsupervised robust representation learning: pretrain, fine-tune, evaluate and share encoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
recipe_app = typer.Typer(help="Check and inspect recipes without running them.", no_args_is_help=True)
app.add_typer(recipe_app, name="recipe")

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
_state = {"debug": False}

P = ParamSpec("P")
R = TypeVar("R")

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a recipe value, e.g. --set optim.lr=0.1 (TOML-typed; repeatable)."),
]
RecipeArg = Annotated[Path, typer.Argument(help="Recipe TOML file.", show_default=False)]


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn UrrlError into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except UrrlError as exc:
            if _state["debug"]:
                raise
            err.print(f"error: {user_message(exc)}", markup=False)
            raise typer.Exit(2) from None
        except Terminated as exc:
            err.print(f"terminated (SIGTERM); {_kept_note(exc, fn.__name__)}", markup=False)
            raise typer.Exit(143) from None
        except KeyboardInterrupt as exc:
            err.print(f"interrupted; {_kept_note(exc, fn.__name__)}", markup=False)
            raise typer.Exit(130) from None

    return wrapper


def user_message(exc: UrrlError) -> str:
    """The error's own line. torch re-raises an exception from a DataLoader worker as the same type, but with
    "Caught DataError in DataLoader worker process 0. Original Traceback …" and the worker's whole traceback as
    its message; the line the user needs is the last one, after the exception's type."""
    text = str(exc)
    if "\nOriginal Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
        text = last.removeprefix(prefix) if last.startswith(prefix) else last.split(": ", 1)[-1]
    return text


# What a stop leaves, for commands that train (and can --resume) and for those that do not; a command may say
# more precisely by setting `kept` on the exception (e.g. corruptions/generate.py names its output folder).
_RESUMABLE = {"pretrain", "finetune", "replica"}
_KEPT = {
    "evaluate": "nothing was written (results.json is written only after every suite has run: run it again)",
    "corrupt": "the output folder was left as it was (a -C set is moved in only when complete)",
}


def _kept_note(exc: KeyboardInterrupt, command: str = "") -> str:
    """What an interrupted command leaves: the note the command set on the exception (`kept`); for training, the
    checkpoint `latest` names now (a stop can land mid-save) in the folder the training loop noted on the exception
    (engine/loop.py `fit`); otherwise the command's own note."""
    kept: str | None = getattr(exc, "kept", None)
    if kept:
        return kept
    if not hasattr(exc, "checkpoints") and command not in _RESUMABLE:
        return _KEPT.get(command, "the command stopped before it finished; it has no --resume")
    folder: Path | None = getattr(exc, "checkpoints", None)
    if folder is None:
        return "the last complete checkpoint, if any, is kept (continue with --resume)"
    try:
        name = (folder / "latest").read_text().strip()[:40]
    except OSError:
        return "no checkpoint had been written yet"
    return f"the last complete checkpoint ({folder / name}) is kept (continue with --resume)"


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or `kill`'s stop): unwinds like Ctrl-C, so the run stops the same clean way."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated


def _handle_sigterm() -> None:
    """Turn SIGTERM into `Terminated` unless someone (an embedding program) installed their own handler.
    Checkpoints are written to a temporary folder and renamed, so stopping anywhere keeps the last one."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        with contextlib.suppress(ValueError):  # not the main thread (an embedding program): leave it to it
            signal.signal(signal.SIGTERM, _on_sigterm)


def _version(value: bool) -> None:
    if value:
        out.print(f"urrlkit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
) -> None:
    from urrlkit.engine.allocator import tune_glibc_malloc

    _state["debug"] = debug
    _handle_sigterm()
    tune_glibc_malloc()  # the application's choice, not the library's: see urrlkit/engine/allocator.py


def _load(recipe: Path, overrides: list[str] | None) -> Recipe:
    from urrlkit import config as recipe_mod

    return recipe_mod.load(recipe, overrides or [])


# ----------------------------------------------------------------------------------------------- recipe


@recipe_app.command("validate")
@user_errors
def recipe_validate(
    files: Annotated[list[Path], typer.Argument(help="Recipe files to check.", show_default=False)],
    set_: SetOpt = None,
) -> None:
    """Validate recipes (extends and --set resolved) without running anything."""
    from urrlkit.config import load

    failed = 0
    for f in files:
        try:
            r = load(f, set_ or [])
        except UrrlError as exc:
            failed += 1
            err.print(f"error: {user_message(exc)}", markup=False)
        else:
            out.print(f"ok: {f} (run {r.run.name!r}, recipe {r.digest()})", markup=False)
    if failed:
        raise typer.Exit(2)


@recipe_app.command("show")
@user_errors
def recipe_show(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Print the fully resolved recipe (extends and --set applied) as TOML."""
    sys.stdout.write(_load(recipe, set_).to_toml())


@recipe_app.command("views")
@user_errors
def recipe_views(
    recipe: RecipeArg,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("views.png"),
    images: Annotated[int, typer.Option("--images", "-n", min=1, help="Training images, one row each.")] = 8,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the views (as run.seed in training).")] = 0,
    set_: SetOpt = None,
) -> None:
    """Draw the recipe's pretraining views of a few training images into a PNG: each row is an image at
    network size, then its views, framed in the colour of the family that made them."""
    from urrlkit.pretext.preview import colour, save_preview, views_preview

    preview = views_preview(_load(recipe, set_), images=images, seed=seed)
    save_preview(preview, out_path)
    counts = preview.families.flatten().bincount(minlength=len(preview.names)).tolist()
    legend = ", ".join(f"{name} {_hex(colour(k))} ({counts[k]} views)" for k, name in enumerate(preview.names))
    out.print(f"wrote {out_path}: {preview.families.shape[0]} images × {preview.families.shape[1]} views; "
              f"frames: {legend}", markup=False)


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)


# ----------------------------------------------------------------------------------------------- pipeline


@app.command()
@user_errors
def pretrain(
    recipe: RecipeArg,
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's last checkpoint.")] = False,
    linear_eval: Annotated[bool, typer.Option("--linear-eval/--no-linear-eval",
                                              help="Linear-evaluate after pretraining (recipe [linear_eval]).")] = True,
) -> None:
    """Unsupervised pretraining (MoCo v2 / URRL / InstDis / PIRL) as the recipe says, then linear evaluation."""
    from urrlkit.pretext.workflow import run_pretrain

    run_pretrain(_load(recipe, set_), resume=resume, linear_eval=linear_eval)


@app.command()
@user_errors
def finetune(
    recipe: RecipeArg,
    from_: Annotated[str, typer.Option("--from", help="Run dir, model dir, .safetensors file or Hub id.")],
    set_: SetOpt = None,
    reg: Annotated[str | None, typer.Option("--reg", help="Regularizer: none | l2sp | sim | adversarial.")] = None,
    reg_weight: Annotated[float | None, typer.Option(
        "--reg-weight", help="λ for sim, α for l2sp, ε for adversarial.")] = None,
    sweep: Annotated[list[str] | None, typer.Option("--sweep", help="e.g. regularizer.weight=0.1,1,10")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint.")] = False,
) -> None:
    """Fine-tune a pretrained encoder with a linear head and an optional regularizer (paper Eq. 3-4)."""
    from urrlkit.finetune.workflow import run_finetune

    run_finetune(_load(recipe, set_), source=from_, reg=reg, reg_weight=reg_weight, sweep=sweep or [],
                 resume=resume)


@app.command("eval")
@user_errors
def evaluate(
    model: Annotated[str, typer.Argument(help="Run dir, model dir, .safetensors file or Hub id.")],
    recipe: Annotated[Path | None, typer.Option("--recipe", "-r", help="Recipe (data and eval sections).")] = None,
    suite: Annotated[list[str] | None, typer.Option(
        "--suite", help="clean | calibration | adversarial | autoattack | cifar10-c | cifar100-c | imagenet-c | "
                        "tiny-imagenet-c | corruptions | all, or a registered suite (repeatable).")] = None,
    set_: SetOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where results go (default: beside the model).")] = None,
    robustbench_json: Annotated[Path | None, typer.Option(
        "--robustbench-json", help="Also write RobustBench's model-info JSON (clean, AutoAttack, corruptions) here.")]
    = None,
) -> None:
    """Evaluate a classifier: clean top-1, corruptions (mCE / -C error), L2-PGD and AutoAttack, calibration."""
    from urrlkit.evaluate.workflow import run_eval

    run_eval(model, recipe=_load(recipe, set_) if recipe else None, overrides=set_ or [], suites=suite or [],
             out_dir=out_dir, robustbench_json=robustbench_json)


@app.command()
@user_errors
def corrupt(
    dataset: Annotated[str, typer.Argument(help="Registered data set name, e.g. cifar10.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (official -C layout).")],
    root: Annotated[Path | None, typer.Option("--root", help="Data set root.")] = None,
    split: Annotated[str, typer.Option(help="Split to corrupt.")] = "test",
    size: Annotated[int | None, typer.Option(help="Image size (default: the data set's own).")] = None,
    corruption: Annotated[list[str] | None, typer.Option("--corruption", "-c", help="Subset (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use a fixed random subset (seed 0) of N images.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random corruptions.")] = 0,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace a non-empty --out folder (the new set is moved in only when complete).")]
    = False,
) -> None:
    """Write a "-C" version of any data set (15 corruptions × 5 severities) in the official layout."""
    from urrlkit.evaluate.corruptions.generate import run_corrupt

    run_corrupt(dataset, out_dir, root=root, split=split, size=size, corruptions=corruption, limit=limit, seed=seed,
                overwrite=overwrite)


@app.command()
@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(
        help="Run or model directories with eval results, results JSON files, or RobustBench model-info JSON files.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for Markdown and CSV.")] = Path("report"),
) -> None:
    """Assemble eval results of several runs into the paper's table layouts (Markdown and CSV)."""
    from urrlkit.experiments.report import run_report

    run_report(runs, out)


@app.command()
@user_errors
def replica(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the replica's runs.")] = Path("runs/replica"),
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds.")] = "0,1,2",
    budget: Annotated[str, typer.Option("--budget", help="cpu (recipes as written) | gpu | smoke (minutes, "
                                                          "checks the pipeline; numbers mean nothing).")] = "cpu",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (commands) without running.")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Markdown report to write (default "
                                                "docs/replica.md; OUT/replica.md for --budget smoke).")] = None,
) -> None:
    """CPU-scale replica of the paper's Tables 1-3 (recipes/replica/); resumable; writes docs/replica.md."""
    from urrlkit.experiments.replica import run_replica

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UrrlError(f"--seeds {seeds!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if not seed_list:
        raise UrrlError("--seeds: give at least one seed")
    run_replica(out_dir, seed_list, budget=budget, dry_run=dry_run, report=report)


# ----------------------------------------------------------------------------------------------- hub


@app.command()
@user_errors
def push(
    path: Annotated[Path, typer.Argument(help="Run directory or model directory.")],
    repo: Annotated[str, typer.Option("--repo", help="Hub repo id, org/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    revision: Annotated[str | None, typer.Option("--revision", help="Branch to push to.")] = None,
    dry_run: Annotated[Path | None, typer.Option("--dry-run", help="Write the upload folder here; no upload.")]
    = None,
) -> None:
    """Upload weights, config, model card and eval results to the Hugging Face Hub in one commit."""
    from urrlkit.hub import run_push

    run_push(path, repo, private=private, revision=revision, dry_run=dry_run)


@app.command()
@user_errors
def pull(
    repo: Annotated[str, typer.Argument(help="Hub id: org/name or hf-hub:org/name[@revision].")],
    revision: Annotated[str | None, typer.Option("--revision", help="Branch, tag or commit.")] = None,
) -> None:
    """Download a model into the standard Hugging Face cache and print its path and card summary."""
    from urrlkit.hub import run_pull

    run_pull(repo, revision=revision)


@app.command()
@user_errors
def convert(
    checkpoint: Annotated[Path, typer.Argument(help="Official MoCo checkpoint (module.encoder_q.* keys).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    backbone: Annotated[str, typer.Option(help="Backbone of the checkpoint.")] = "resnet50",
    small_stem: Annotated[bool, typer.Option(help="Checkpoint uses the 3×3 stem.")] = False,
) -> None:
    """Import a MoCo-style checkpoint into a urrlkit model directory (safetensors + config)."""
    from urrlkit.hub import run_convert

    run_convert(checkpoint, out_dir, backbone=backbone, small_stem=small_stem)


if __name__ == "__main__":
    app()
