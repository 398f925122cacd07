"""Local model formats and name resolution: run dir, model dir, lone .safetensors file, Hub-id parsing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import urrlkit
from urrlkit.errors import CheckpointError, HubError
from urrlkit.hub import (
    CONFIG,
    WEIGHTS,
    HubId,
    load_backbone,
    load_model,
    parse_hub_id,
    read_config,
    resolve_model,
    save_model,
)
from urrlkit.models import Classifier, Encoder, build_encoder


def tiny_encoder(seed: int = 0) -> Encoder:
    torch.manual_seed(seed)
    return build_encoder("resnet10", small_stem=True, width=8).eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_model_dir_round_trip_is_exact(tmp_path: Path, images: torch.Tensor) -> None:
    enc = tiny_encoder()
    save_model(enc, tmp_path / "m")
    loaded = load_backbone(tmp_path / "m")
    assert torch.equal(loaded(images), enc(images))
    assert loaded.feature_dim == 64 and loaded(images).shape == (3, 64)
    cfg = read_config(tmp_path / "m")
    assert cfg["kind"] == "encoder" and cfg["feature_dim"] == 64 and cfg["head"] is None
    assert cfg["input"]["range"] == [0.0, 1.0] and cfg["encoder"]["backbone"] == "resnet10"
    assert loaded.config == cfg


def test_run_dir_resolves_to_its_model(tmp_path: Path) -> None:
    save_model(tiny_encoder(), tmp_path / "run" / "model")
    assert resolve_model(tmp_path / "run") == tmp_path / "run" / "model"


def test_lone_safetensors_file_loads_from_its_metadata(tmp_path: Path, images: torch.Tensor) -> None:
    enc = tiny_encoder()
    save_model(enc, tmp_path / "m")
    lone = tmp_path / "elsewhere" / "weights.safetensors"
    lone.parent.mkdir()
    shutil.copy(tmp_path / "m" / WEIGHTS, lone)  # no config.json beside it
    assert torch.equal(load_backbone(lone)(images), enc(images))


def test_classifier_backbone_drops_the_head(tmp_path: Path, images: torch.Tensor) -> None:
    clf = Classifier(tiny_encoder(), 10).eval()
    save_model(clf, tmp_path / "c")
    model = load_model(tmp_path / "c")
    assert isinstance(model, Classifier) and torch.equal(model(images), clf(images))
    enc = urrlkit.load_backbone(str(tmp_path / "c"))
    assert isinstance(enc, Encoder) and torch.equal(enc(images), clf.encoder(images))
    assert read_config(tmp_path / "c")["head"] == {"type": "linear", "in_features": 64, "out_features": 10}


def test_pickle_files_are_never_loaded(tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match=r"only \.safetensors.*urrl convert"):
        load_model(bad)


def test_mismatched_weights_name_the_file(tmp_path: Path) -> None:
    save_model(tiny_encoder(), tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / CONFIG).read_text())
    cfg["encoder"]["width"] = 16
    (tmp_path / "m" / CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights do not match the config"):
        load_model(tmp_path / "m")


def test_unknown_local_name_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as exc:
        load_model(tmp_path / "a" / "b" / "c")
    assert "\n" not in str(exc.value) and "not a Hub id" in str(exc.value)


@pytest.mark.parametrize(("name", "expected"), [
    ("hf-hub:org/name", HubId("org/name")),
    ("hf-hub:org/name@v1.0", HubId("org/name", "v1.0")),
    ("org/name", HubId("org/name")),
    ("org/my.model-1_b@dev", HubId("org/my.model-1_b", "dev")),
    ("runs/a/model", None),
    ("./local", None),
    ("name", None),
    ("org/../x", None),
])
def test_parse_hub_id(name: str, expected: HubId | None) -> None:
    assert parse_hub_id(name) == expected


def test_conflicting_revisions_are_refused() -> None:
    assert parse_hub_id("org/name", "dev") == HubId("org/name", "dev")
    with pytest.raises(HubError, match="revision"):
        parse_hub_id("org/name@v1", "v2")


def test_existing_local_path_wins_over_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_model(tiny_encoder(), tmp_path / "org" / "name")
    assert resolve_model("org/name") == Path("org/name")
