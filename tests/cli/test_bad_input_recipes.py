"""Bad recipes and `--set` items, table-driven: each ends with exit code 2, one "error:" line on stderr naming
the file or field at fault, no traceback, and nothing on disk changed (the checks of tests/cli/test_bad_input.py,
for what breaks a recipe's reading rather than its values: extends chains, file size, nesting, huge integers).
Then what a table `--set` does instead of being refused: it merges as `extends` does.

The `urrl` app runs in-process (typer's CliRunner) and `recipe validate` imports no torch, so cases are quick.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path

import clean_error
import pytest
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.config.compose import MAX_EXTENDS_DEPTH, MAX_NESTING, MAX_RECIPE_BYTES

ROOT = Path(__file__).resolve().parents[2]
QUICK = str(ROOT / "recipes" / "quickstart.toml")
BIG = "9" * 5000  # past Python's 4300-digit limit on int(str)


def expect_clean_error(root: Path, args: list[str], names: list[str]) -> str:
    """tests/clean_error.py's check, with the line under 400 characters: a huge input is not echoed back whole."""
    return clean_error.expect_clean_error(root, args, names, max_len=400)


# ------------------------------------------------------------------------------------------ recipe files
def _write(text: str) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        (tmp / "r.toml").write_text(text)
        return str(tmp / "r.toml")
    return make


def _chain(n: int) -> Callable[[Path], str]:
    """c<n>.toml extends c<n-1>.toml … extends c0.toml: n + 1 files."""
    def make(tmp: Path) -> str:
        (tmp / "c0.toml").write_text("[run]\nname = 'deep'\n")
        for i in range(1, n + 1):
            (tmp / f"c{i}.toml").write_text(f"extends = 'c{i - 1}.toml'\n")
        return str(tmp / f"c{n}.toml")
    return make


def _cycle(tmp: Path) -> str:
    for a, b in (("a", "b"), ("b", "c"), ("c", "a")):
        (tmp / f"{a}.toml").write_text(f"extends = '{b}.toml'\n")
    return str(tmp / "a.toml")


def _extends_dir(tmp: Path) -> str:
    (tmp / "base").mkdir()
    return _write("extends = 'base'\n")(tmp)


def _extends_fifo(tmp: Path) -> str:
    os.mkfifo(tmp / "base.toml")  # opening it would wait for a writer forever
    return _write("extends = 'base.toml'\n")(tmp)


def _symlink_loop(tmp: Path) -> str:
    (tmp / "a.toml").symlink_to("b.toml")
    (tmp / "b.toml").symlink_to("a.toml")
    return str(tmp / "a.toml")


def _binary(tmp: Path) -> str:
    (tmp / "r.toml").write_bytes(b"[run]\nname = '\xff\xfe'\n")
    return str(tmp / "r.toml")


def _binary_base(tmp: Path) -> str:
    (tmp / "base.toml").write_bytes(b"\x80\x81\x00\xff" * 50)
    return _write("extends = 'base.toml'\n")(tmp)


def _huge(tmp: Path) -> str:
    (tmp / "r.toml").write_text("[run]\nname = 'x'\n# " + "a" * MAX_RECIPE_BYTES + "\n")
    return str(tmp / "r.toml")


def _inline(depth: int, open_: str = "{a = ", close: str = "}") -> Callable[[Path], str]:
    return _write(f"[finetune.regularizer]\ntype = 'custom'\nname = 'x'\nparams = {{ p = "
                  f"{open_ * depth}1{close * depth} }}\n")


FILE_CASES: list[tuple[str, Callable[[Path], str], list[str]]] = [
    # 1001 files: the cap is hit at the 32nd from the top, c969.toml, long before Python's recursion limit
    ("extends 1000 deep", _chain(1000), [f"c{1000 - MAX_EXTENDS_DEPTH + 1}.toml: extends", "32"]),
    ("extends one past the cap", _chain(MAX_EXTENDS_DEPTH), ["c1.toml: extends", "32"]),
    ("extends cycle of three", _cycle, ["a.toml: circular extends (a.toml -> b.toml -> c.toml -> a.toml)"]),
    ("extends a folder", _extends_dir, ["r.toml: extends", "is a folder", "base"]),
    ("extends a FIFO", _extends_fifo, ["r.toml: extends", "not a regular file", "base.toml"]),
    ("extends empty", _write("extends = ''\n"), ["r.toml: extends"]),
    ("extends a list", _write("extends = ['a.toml']\n"), ["r.toml: extends"]),
    ("extends a table", _write("[extends]\nfile = 'a.toml'\n"), ["r.toml: extends"]),
    ("symlink loop", _symlink_loop, ["a.toml: cannot read recipe", "symbolic links"]),
    ("extends a symlink loop", lambda tmp: (_symlink_loop(tmp), _write("extends = 'a.toml'\n")(tmp))[1],
     ["r.toml: extends", "a.toml"]),
    ("not UTF-8", _binary, ["r.toml: not a UTF-8 text file"]),
    ("byte-order mark", _write("\ufeff[run]\nname = 'x'\n"), ["r.toml: malformed TOML: the file starts with a byte"]),
    ("NUL character", _write("[run]\nname = 'a\x00b'\n"), ["r.toml:2:", "malformed TOML"]),
    ("base not UTF-8", _binary_base, ["base.toml: not a UTF-8 text file"]),
    ("over 1 MiB", _huge, ["r.toml: recipe file larger than 1 MiB"]),
    # deep enough for tomllib's recursion to fail, and deep enough only for ours (merge, validation, writing)
    ("inline tables 3000 deep", _inline(3000), ["r.toml: malformed TOML", "nested"]),
    ("inline arrays 3000 deep", _inline(3000, "[", "]"), ["r.toml: malformed TOML", "nested"]),
    ("inline tables 40 deep", _inline(40), ["r.toml: finetune.regularizer.params.p.a", f"{MAX_NESTING} levels"]),
    ("table header 1000 deep", _write("[" + ".".join(["a"] * 1000) + "]\nx = 1\n"), ["r.toml: a.a.a", "nested"]),
    ("integer of 5000 digits", _write(f"[optim]\nepochs = {BIG}\n"), ["r.toml: malformed TOML", "integer"]),
    ("integer 2^63", _write(f"[optim]\nepochs = {2**63}\n"), ["r.toml: optim.epochs", "64-bit"]),
    ("integer below -2^63", _write(f"[run]\nseed = {-(2**63) - 1}\n"), ["r.toml: run.seed", "64-bit"]),
    ("integer 2^63 in a list", _write(f"[optim]\nmilestones = [1, {2**63}]\n"), ["optim.milestones[1]", "64-bit"]),
]


@pytest.mark.parametrize(("label", "make", "names"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_recipe_file(tmp_path: Path, label: str, make: Callable[[Path], str], names: list[str]) -> None:
    expect_clean_error(tmp_path, ["recipe", "validate", make(tmp_path)], names)


# ------------------------------------------------------------------------------------------ --set items
SET_CASES: list[tuple[str, list[str]]] = [
    ("extends='urrl.toml'", ["--set", "extends can only be given in the recipe file"]),
    ("extends=''", ["extends can only be given in the recipe file"]),
    ("extends.x=1", ["extends can only be given in the recipe file"]),
    (f"optim.epochs={BIG}", ["--set 'optim.epochs=...'", "integer"]),
    (f"optim.epochs={2**63}", ["optim.epochs", "64-bit"]),
    (f"run.seed={-(2**64)}", ["run.seed", "64-bit"]),
    (f"optim={{epochs={2**63}}}", ["optim.epochs", "64-bit"]),
    ("finetune.regularizer={type='custom', name='x', params={p=" + "[" * 3000 + "]" * 3000 + "}}",
     ["--set 'finetune.regularizer=...'", "nested"]),
    ("finetune.regularizer.params={p=" + "{a=" * 40 + "1" + "}" * 40 + "}",
     ["finetune.regularizer.params.p.a.a", f"{MAX_NESTING} levels"]),
    ("optim.epochs.x=1", ["--set 'optim.epochs.x=1'", "'epochs' is a value"]),
    # a 3000-part key into a free-form table (custom params) used to end in a RecursionError
    ("finetune.regularizer.params." + ".".join(["a"] * 3000) + "=1", ["--set 'finetune.regularizer.params.a.a",
                                                                      "nested more than"]),
]


@pytest.mark.parametrize(("item", "names"), SET_CASES, ids=[c[0][:40] for c in SET_CASES])
def test_bad_set_item(tmp_path: Path, item: str, names: list[str]) -> None:
    expect_clean_error(tmp_path, ["recipe", "validate", QUICK, "--set", item], names)


# ------------------------------------------------------------------------------------------ what still works
def _show(*args: str) -> dict:
    result = CliRunner().invoke(app, ["recipe", "show", *args])
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout)


def test_an_extends_chain_at_the_cap_loads(tmp_path: Path) -> None:
    """MAX_EXTENDS_DEPTH files in all (the top one and its 31 bases) are fine."""
    assert _show(_chain(MAX_EXTENDS_DEPTH - 1)(tmp_path))["run"]["name"] == "deep"


def test_set_table_merges_key_by_key() -> None:
    """`--set 'optim={epochs=1}'` used to replace [optim] whole: quickstart's lr and weight decay were lost."""
    optim = _show(QUICK, "--set", "optim={epochs=1}")["optim"]
    assert (optim["epochs"], optim["lr"], optim["weight_decay"], optim["log_every"]) == (1, 0.06, 5e-4, 20)
    assert _show(QUICK, "--set", "optim={epochs=1}") == _show(QUICK, "--set", "optim.epochs=1")


def test_set_table_follows_extends_rules() -> None:
    """As in an extending file: one of lr / lr_per_256 / lr_sqrt replaces the others, a new `type` replaces its
    table whole, and a new pretext method drops the old one's own keys (MoCo's queue_size under SimCLR)."""
    assert "lr" not in _show(QUICK, "--set", "optim={lr_per_256=0.03}")["optim"]
    reg = _show(QUICK, "--set", "finetune.regularizer={type='sim', weight=0.5}",
                "--set", "finetune.regularizer={type='l2sp', alpha=0.2}")["finetune"]["regularizer"]
    assert reg["type"] == "l2sp" and reg["alpha"] == 0.2 and "weight" not in reg
    pretext = _show(QUICK, "--set", "pretext={method='simclr'}")["pretext"]
    assert pretext["method"] == "simclr" and "queue_size" not in pretext and pretext["p"] == 0.5
