"""Shared pytest fixtures. Keep this file generic; topic-specific fixtures live beside their tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# The suite runs on the CPU, as CI does, also on a machine with a GPU: its resume and equivalence tests are
# bit-exact, which CUDA's nondeterministic kernels (index_copy_, scatter_add_, …) do not promise. Hiding the
# GPU before anything initialises CUDA keeps in-process and subprocess runs alike on the CPU. GPU behaviour is
# measured by benchmarks/gpu_check.sh instead; URRL_TEST_GPU=1 opts out.
if os.environ.get("URRL_TEST_GPU") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

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
