"""The bad-input tests' one check: a command given bad input exits 2 with one `error:` line naming what is wrong,
no traceback, and nothing on disk changed (tests/cli/test_bad_input*.py). Torch-free."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from urrlkit.cli import app


def sets(*values: str) -> list[str]:
    """`--set` options for each value."""
    return [a for v in values for a in ("--set", v)]


def snapshot(root: Path, skip: str | None = None) -> dict[str, str]:
    """Every path under `root` (but the top-level entry `skip`) with a digest of its content (files) or a marker
    (links, folders, FIFOs and the like)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if skip is not None and rel.split("/")[0] == skip:
            continue
        if p.is_symlink():
            out[rel] = "link:" + str(p.readlink())
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir" if p.is_dir() else "other"
    return out


def expect_clean_error(root: Path, args: list[str], names: str | list[str], *, max_len: int | None = None,
                       skip: str | None = None) -> str:
    """Exit 2, one "error:" line holding each of `names` (and, with `max_len`, shorter than it: a huge input is
    not echoed back whole), no traceback, nothing under `root` but `skip` changed. Returns the line."""
    before = snapshot(root, skip)
    result = CliRunner().invoke(app, args)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:], repr(result.exception))
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for name in [names] if isinstance(names, str) else names:
        assert name in lines[0], lines[0]
    if max_len is not None:
        assert len(lines[0]) < max_len, lines[0]
    assert "Traceback" not in result.output
    assert snapshot(root, skip) == before, "the failed command changed files on disk"
    return lines[0]
