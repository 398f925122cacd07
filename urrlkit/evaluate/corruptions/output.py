"""Where `urrl corrupt` writes: a -C set is built in a temporary sibling folder and moved into place only when
every file of it is complete, so the output folder always holds one whole set (the old one or the new one),
never files of two runs or a half-written array."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from urrlkit.errors import UrrlError


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output(out_dir: Path, overwrite: bool) -> None:
    """Refuse, before any work, an output folder that holds files (unless `overwrite`), is a file, or cannot
    be written to (its parent, where the temporary sibling goes)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UrrlError(f"--out {out_dir}: is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UrrlError(f"--out {out_dir}: folder is not empty (pass --overwrite to replace its contents)")
    base = _nearest_existing(out_dir.parent.resolve())
    if not base.is_dir():
        raise UrrlError(f"--out {out_dir}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UrrlError(f"--out {out_dir}: cannot write to {base} (permission denied)")


@contextmanager
def staged_output(out_dir: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `out_dir`; on success it replaces `out_dir` (an old set is
    removed only after the new one is in place); on any error or interrupt it is removed and `out_dir` is
    left as it was. OSError (a full disk, a permission) becomes one line naming the folder."""
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = parent / f".{out_dir.name}.partial-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)  # a leftover of an earlier, killed run with this pid
        stage.mkdir()
    except OSError as exc:
        raise UrrlError(f"--out {out_dir}: cannot create the output folder ({exc.strerror})") from None
    try:
        yield stage
        _swap_in(stage, out_dir)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else exc.strerror
        raise UrrlError(f"--out {out_dir}: cannot write ({reason}); no partial files were left, "
                        "the folder is as it was") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _swap_in(stage: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        stage.rename(out_dir)
        return
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    out_dir.rename(old)
    try:
        stage.rename(out_dir)
    except OSError:
        old.rename(out_dir)  # put the old set back before reporting
        raise
    shutil.rmtree(old, ignore_errors=True)
