"""Developer sessions: `nox` runs lint and tests; `nox -s docs` regenerates the reference pages;
`nox -s replica` runs the CPU-scale replica (`urrl replica`)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

# The exact builds the README installs; pyproject keeps a range so users can bring their own CUDA build.
TORCH = ["torch==2.14.1", "torchvision==0.29.1"]
ROOT = Path(__file__).parent


def _install(session: nox.Session, extra: str = "test") -> None:
    session.install(*TORCH)
    session.install("-e", f".[{extra}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The default (fast) suite; pass pytest options after --, e.g. `nox -s tests -- -m slow`."""
    _install(session)
    session.run("python", "-m", "pytest", *session.posargs, success_codes=[0, 5])


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy with the settings in pyproject.toml (mypy needs the package's dependencies for their types)."""
    _install(session)
    session.run("ruff", "check", ".", *session.posargs)
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate docs/recipes.md and docs/cli.md from the Pydantic models and `urrl --help`."""
    _install(session)
    session.run("python", "docs/gen_recipe_reference.py")


@nox.session
def replica(session: nox.Session) -> None:
    """The CPU-scale replica of the paper's Tables 1-3 (slow, ≤ 90 min on 2 cores): `urrl replica`, resumable;
    writes docs/replica.md. Options after --, e.g. `nox -s replica -- --dry-run` or `-- --seeds 0,1,2`."""
    _install(session)
    session.run("urrl", "replica", *session.posargs)
