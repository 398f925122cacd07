"""Fixtures of the Hub tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from standin_hub import StandinHub


@pytest.fixture
def timm_hub(standin_hub: StandinHub, hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> StandinHub:
    """timm calls huggingface_hub without an endpoint or cache, so it uses what huggingface_hub read at import;
    the test sets what that import would have computed (test_hub_interop.py does the same)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", "hf_standinSECRETtoken0123456789")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_env / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", standin_hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        standin_hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    return standin_hub
