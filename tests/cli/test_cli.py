"""The `urrl` command line: every command is listed, --version works, each command's help renders."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from urrlkit import __version__
from urrlkit.cli import app

COMMANDS = ["pretrain", "finetune", "eval", "corrupt", "push", "pull", "recipe", "report", "convert"]


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    listed = set(re.findall(r"^\W*([a-z][a-z-]*)\s{2,}", result.output, flags=re.MULTILINE))
    for command in COMMANDS:
        assert command in listed, f"{command} missing from urrl --help:\n{result.output}"


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"urrlkit {__version__}"


def test_no_arguments_shows_help() -> None:
    result = CliRunner().invoke(app, [])
    assert "pretrain" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", [*COMMANDS, "recipe validate", "recipe show"])
def test_command_help(command: str) -> None:
    """Help renders without importing the heavy runners (they are imported inside each command)."""
    result = CliRunner().invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_unknown_command_exit_code() -> None:
    result = CliRunner().invoke(app, ["pretrian"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
