"""Shared pytest fixtures. Keep this file generic; topic-specific fixtures live beside their tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from standin_hub import StandinHub

_HF_VARS = ("HF_ENDPOINT", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
            "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME")


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolated Hugging Face state: an empty HF_HOME (hence cache) under tmp_path, online, no token at all."""
    from huggingface_hub import constants

    for var in _HF_VARS:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    # The client reads a stored login from this path on every request; never let a developer's real one in.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    return home


@pytest.fixture
def standin_hub(hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandinHub]:
    """TEST FIXTURE: the in-memory stand-in Hub (tests/standin_hub.py) on 127.0.0.1, as HF_ENDPOINT."""
    with StandinHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub
