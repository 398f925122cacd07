"""Interoperability contract: weights urrlkit saves and pushes load in timm (`hf_hub:` names, against the
stand-in Hub on 127.0.0.1) and in torchvision without renaming, with the same features as `load_backbone`.
timm is an optional test dependency (extra `interop`, included in `test`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from standin_hub import StandinHub
from torch import nn

from urrlkit.hub import load_backbone, load_model, run_push, save_model
from urrlkit.models import Classifier, build_encoder

TOKEN = "hf_standinSECRETtoken0123456789"


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def normalize(x: torch.Tensor, cfg: dict) -> torch.Tensor:
    """What a torchvision or timm user does: our models normalise inside, theirs expect normalised input."""
    mean = torch.tensor(cfg["encoder"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["encoder"]["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


def test_saved_resnet_loads_into_torchvision_without_renaming(tmp_path: Path, images: torch.Tensor) -> None:
    import torchvision

    torch.manual_seed(0)
    d = save_model(build_encoder("resnet18", small_stem=False), tmp_path / "m")
    ours = load_backbone(d)
    tv = torchvision.models.resnet18()
    result = tv.load_state_dict(load_file(str(d / "model.safetensors")), strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and result.unexpected_keys == []
    tv.fc = nn.Identity()
    cfg = json.loads((d / "config.json").read_text())
    with torch.no_grad():
        torch.testing.assert_close(tv.eval()(normalize(images, cfg)), ours(images))


def test_small_stem_loads_into_a_hand_built_torchvision_resnet(tmp_path: Path, images: torch.Tensor) -> None:
    """The recipe docs/hub.md gives for the CIFAR 3×3-stem variants."""
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    d = save_model(build_encoder("resnet10", small_stem=True, width=8), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    assert "architecture" not in cfg  # timm cannot build it by name, so config.json does not pretend it can
    tv, w = ResNet(BasicBlock, [1, 1, 1, 1]), cfg["encoder"]["width"]
    tv.inplanes, tv.bn1 = w, nn.BatchNorm2d(w)
    tv.layer1 = tv._make_layer(BasicBlock, w, 1)
    tv.layer2, tv.layer3, tv.layer4 = (tv._make_layer(BasicBlock, w * m, 1, stride=2) for m in (2, 4, 8))
    tv.conv1 = nn.Conv2d(3, w, kernel_size=3, stride=1, padding=1, bias=False)
    tv.maxpool = nn.Identity()
    tv.fc = nn.Identity()
    tv.load_state_dict(load_file(str(d / "model.safetensors")), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(tv.eval()(normalize(images, cfg)), load_backbone(d)(images))


def test_files_in_the_older_prefixed_layout_still_load(tmp_path: Path, images: torch.Tensor) -> None:
    torch.manual_seed(0)
    clf = Classifier(build_encoder("resnet10", small_stem=True, width=8), 5).eval()
    d = save_model(clf, tmp_path / "m")
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(d / "model.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(load_model(d)(images), clf(images))


def test_timm_loads_a_pushed_resnet_from_the_hub(standin_hub: StandinHub, hf_env: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, images: torch.Tensor) -> None:
    timm = pytest.importorskip("timm")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    # timm calls huggingface_hub without an endpoint or cache, so it uses the HF_ENDPOINT and HF_HOME read when
    # huggingface_hub was imported; a user sets them before starting Python, the test sets what that import
    # would have computed (and so never touches the developer's real cache).
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_env / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", standin_hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        standin_hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    torch.manual_seed(0)
    clf = Classifier(build_encoder("resnet18", small_stem=False), 7).eval()
    with torch.no_grad():
        for p in clf.encoder.trunk.modules():  # non-trivial BN statistics, so eval-mode BN is really compared
            if isinstance(p, nn.BatchNorm2d):
                p.running_mean.uniform_(-0.1, 0.1)
                p.running_var.uniform_(0.5, 1.5)
    run_push(save_model(clf, tmp_path / "m"), "org/r18")
    model = timm.create_model("hf_hub:org/r18", pretrained=True).eval()
    cfg = model.pretrained_cfg
    assert model.num_classes == 7 and cfg["mean"] == list(clf.encoder.spec["mean"])
    x = (images - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), clf(images))
        features = timm.create_model("hf_hub:org/r18", pretrained=True, num_classes=0).eval()(x)
        torch.testing.assert_close(features, clf.encoder(images))
    run_push(save_model(clf.encoder, tmp_path / "enc"), "org/r18-encoder")  # an encoder: features, fc absent
    encoder = timm.create_model("hf_hub:org/r18-encoder", pretrained=True).eval()
    assert encoder.num_classes == 0
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), clf.encoder(images))
