"""Up-front checks that an output path can be written, so a read-only folder is one line before any work
(the writes themselves go through urrlkit/engine/statefile.py's atomic helpers)."""

from __future__ import annotations

import os
from pathlib import Path

from urrlkit.errors import UrrlError


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_dir(folder: Path, flag: str, named: Path | None = None) -> None:
    """Refuse a `folder` that is a file, or that (or the nearest existing folder above it, where it would be
    created) cannot be written to. The line names `named` (default: the folder) after `flag`."""
    folder = Path(folder)
    label = f"{flag} {named if named is not None else folder}"
    if folder.exists() and not folder.is_dir():
        raise UrrlError(f"{label}: {folder} is a file, not a folder")
    base = _nearest_existing(folder.resolve())
    if not base.is_dir():
        raise UrrlError(f"{label}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UrrlError(f"{label}: cannot write to {base} (permission denied or read-only)")


def check_writable_file(path: Path, flag: str) -> None:
    """Refuse a file `path` that is an existing folder or whose folder cannot be written to."""
    path = Path(path)
    if path.is_dir():
        raise UrrlError(f"{flag} {path}: is a folder; give a file path, e.g. {path / 'model.json'}")
    check_writable_dir(path.parent, flag, named=path)
