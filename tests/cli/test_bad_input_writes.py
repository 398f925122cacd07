"""Writes that fail, table-driven (issue 23): a read-only folder, a read-only file system and a full disk in
`urrl report`, `urrl push --dry-run` and `urrl eval --out / --robustbench-json`. Every case must end with exit
code 2 and exactly one line on stderr that starts with "error:" and names the path, with no traceback and no
partial file left behind (no `*.tmp`, no half-written target).

A read-only folder is chmod 0o500; as root that does not stop a write, so there `os.access` answers as it
would for a non-root user (the up-front check) — and the cases that fail at write time raise the OSError
(EROFS, ENOSPC) from the writer itself, after it has written part of the file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from urrlkit.cli import app

ROOT = Path(__file__).resolve().parents[2]
QUICK = str(ROOT / "recipes" / "quickstart.toml")
EVAL_SETS = ["--set", "data.test_limit=32", "--set", "data.batch_size=32"]

Setup = Callable[[Path, pytest.MonkeyPatch], tuple[list[str], list[str], Path]]


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for p in [tmp_path, *tmp_path.rglob("*")]:  # let pytest remove what a case made read-only
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)


def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o500)
    if os.access(folder, os.W_OK):  # root: the mode does not stop writes, so answer as access(2) would
        from urrlkit.engine import writable

        real = os.access

        def access(path: str | os.PathLike[str], mode: int, *a: object, **k: object) -> bool:
            if mode & os.W_OK and Path(path).resolve() == folder.resolve():
                return False
            return real(path, mode)

        monkeypatch.setattr(writable.os, "access", access)
    return folder


def failing_fsync(monkeypatch: pytest.MonkeyPatch, code: int, target: str) -> None:
    """The atomic writer's fsync of `target`'s temporary file fails (the data was written to it)."""
    from urrlkit.engine import statefile

    real = statefile.os.fsync

    def fsync(fd: int) -> None:
        if f".{target}." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(statefile.os, "fsync", fsync)


def failing_copy(monkeypatch: pytest.MonkeyPatch, code: int, target: str) -> None:
    """shutil.copyfile writes half of `target`, then the disk is full (or read-only)."""
    real = shutil.copyfile

    def copyfile(src: str | os.PathLike[str], dst: str | os.PathLike[str], **k: object) -> object:
        if Path(dst).name == target:
            Path(dst).write_bytes(Path(src).read_bytes()[:100])
            raise OSError(code, os.strerror(code), str(dst))
        return real(src, dst)

    monkeypatch.setattr(shutil, "copyfile", copyfile)


# ------------------------------------------------------------------------------------------ inputs
def _model(tmp: Path) -> Path:
    from urrlkit.hub import save_model
    from urrlkit.models import Classifier, build_encoder

    torch.manual_seed(0)
    return save_model(Classifier(build_encoder("resnet10", small_stem=True, width=4), 10), tmp / "m")


def _run(tmp: Path) -> str:
    run = tmp / "run-cifar10" / "eval"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "model": "m", "recipe_hash": "abc", "dataset": "cifar10",
        "metrics": {"clean": {"top1": 90.0}, "adversarial": {"robust_top1": 40.0, "clean_top1": 90.0}}}))
    return str(tmp / "run-cifar10")


# ------------------------------------------------------------------------------------------ report
def report_read_only(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], list[str], Path]:
    out = read_only(tmp / "ro", mp) / "report"
    return ["report", _run(tmp), "--out", str(out)], [str(out)], out


def report_out_is_file(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], list[str], Path]:
    (tmp / "report").write_text("x")
    return ["report", _run(tmp), "--out", str(tmp / "report")], [str(tmp / "report"), "is a file"], tmp / "nope"


def report_write_fails(code: int, target: str) -> Setup:
    def setup(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], list[str], Path]:
        failing_fsync(mp, code, target)
        return ["report", _run(tmp), "--out", str(tmp / "report")], [str(tmp / "report" / target)], \
            tmp / "report" / target
    return setup


# ------------------------------------------------------------------------------------------ push --dry-run
def push_read_only(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], list[str], Path]:
    dest = read_only(tmp / "ro", mp) / "dry"
    return ["push", str(_model(tmp)), "--repo", "org/m", "--dry-run", str(dest)], [str(dest)], dest


def push_write_fails(code: int, target: str) -> Setup:
    def setup(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], list[str], Path]:
        model = _model(tmp)
        failing_copy(mp, code, target)
        dest = tmp / "dry"
        return ["push", str(model), "--repo", "org/m", "--dry-run", str(dest)], [str(dest)], dest
    return setup


# ------------------------------------------------------------------------------------------ eval
def _eval(tmp: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", str(_model(tmp)), "--recipe", QUICK, "--out", str(out), "--suite", "clean",
            "--suite", "calibration", *EVAL_SETS, *extra]


def _no_suites(mp: pytest.MonkeyPatch) -> None:
    """The up-front cases must fail before any suite runs."""
    from urrlkit.evaluate import workflow

    def run_suites(*a: object, **k: object) -> None:
        raise AssertionError("the suites ran before the output was checked")

    mp.setattr(workflow, "run_suites", run_suites)


def eval_out_read_only(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], list[str], Path]:
    _no_suites(mp)
    out = read_only(tmp / "ro", mp) / "eval"
    return _eval(tmp, out), ["--out", str(out)], out


def eval_robustbench_is_folder(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], list[str], Path]:
    _no_suites(mp)
    (tmp / "rb").mkdir()
    out = tmp / "eval"
    return (_eval(tmp, out, "--suite", "autoattack", "--robustbench-json", str(tmp / "rb")),
            ["--robustbench-json", str(tmp / "rb"), "is a folder"], out / "results.json")


def eval_robustbench_read_only(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], list[str], Path]:
    _no_suites(mp)
    rb = read_only(tmp / "ro", mp) / "m.json"
    out = tmp / "eval"
    return (_eval(tmp, out, "--suite", "autoattack", "--robustbench-json", str(rb)),
            ["--robustbench-json", str(rb)], out / "results.json")


def eval_write_fails(code: int, target: str) -> Setup:
    def setup(tmp: Path, mp: pytest.MonkeyPatch) -> tuple[list[str], list[str], Path]:
        failing_fsync(mp, code, target)
        out = tmp / "eval"
        return _eval(tmp, out), [str(out / target)], out / target
    return setup


CASES: list[tuple[str, Setup, str | None]] = [
    ("report out read-only", report_read_only, None),
    ("report out is a file", report_out_is_file, None),
    ("report disk full on a table", report_write_fails(errno.ENOSPC, "table2.csv"), "the disk is full"),
    ("report disk full on report.md", report_write_fails(errno.ENOSPC, "report.md"), "the disk is full"),
    ("report read-only file system", report_write_fails(errno.EROFS, "table1.csv"), "Read-only file system"),
    ("push dry-run read-only", push_read_only, None),
    ("push dry-run disk full", push_write_fails(errno.ENOSPC, "model.safetensors"), "the disk is full"),
    ("push dry-run read-only file system", push_write_fails(errno.EROFS, "config.json"), "Read-only"),
    ("eval out read-only", eval_out_read_only, None),
    ("eval robustbench path is a folder", eval_robustbench_is_folder, None),
    ("eval robustbench folder read-only", eval_robustbench_read_only, None),
    ("eval disk full on results.json", eval_write_fails(errno.ENOSPC, "results.json"), "the disk is full"),
    ("eval disk full on a plot", eval_write_fails(errno.ENOSPC, "reliability.png"), "the disk is full"),
    ("eval read-only file system", eval_write_fails(errno.EROFS, "results.json"), "Read-only file system"),
]


@pytest.mark.parametrize(("label", "setup", "reason"), CASES, ids=[c[0] for c in CASES])
def test_failed_write_is_one_line_and_leaves_nothing_partial(tmp: Path, monkeypatch: pytest.MonkeyPatch,
                                                              label: str, setup: Setup, reason: str | None) -> None:
    args, names, target = setup(tmp, monkeypatch)
    result = CliRunner().invoke(app, args)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:], repr(result.exception))
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for name in [*names, *([reason] if reason else [])]:
        assert name in lines[0], lines[0]
    assert "Traceback" not in result.output
    leftovers = [p for p in tmp.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]
    assert not leftovers, leftovers
    assert not target.exists(), f"{target} was left behind"
