"""Hub interop for `timm:` backbones: a tiny ViT and ConvNeXt pushed to the stand-in Hub load with timm's own
`hf_hub:` loader (features and a fine-tuned Classifier's logits identical to urrlkit's), the file holds timm's
tensor names with the head under timm's classifier name, and the card describes the backbone it has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open
from standin_hub import StandinHub

from urrlkit.hub import load_model, run_push, save_model
from urrlkit.hub.card import card_summary, render_card
from urrlkit.models import Classifier, build_encoder

VIT = {"backbone": "timm:vit_tiny_patch16_224", "model_args": {"img_size": 32, "patch_size": 8}}
CONVNEXT = {"backbone": "timm:convnext_atto", "model_args": {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]}}


def trained_like(clf: Classifier) -> Classifier:
    """Non-trivial weights everywhere (a fresh ViT's zero head and LayerNorm defaults would hide a mix-up)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in clf.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return clf.eval()


@pytest.mark.parametrize(("table", "head"), [(VIT, "head"), (CONVNEXT, "head.fc")], ids=["vit", "convnext"])
def test_timm_loads_a_pushed_timm_backbone_from_the_hub(timm_hub: StandinHub, tmp_path: Path, table: dict,
                                                        head: str) -> None:
    import timm

    torch.manual_seed(0)
    clf = trained_like(Classifier(build_encoder(**table), 6))
    d = save_model(clf, tmp_path / "clf")
    with safe_open(str(d / "model.safetensors"), "pt") as fh:
        keys = set(fh.keys())
    assert {f"{head}.weight", f"{head}.bias"} <= keys and not any(k.startswith(("trunk.", "encoder.")) for k in keys)
    assert keys == set(timm.create_model(table["backbone"][5:], num_classes=6, **table["model_args"]).state_dict())
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["architecture"] == table["backbone"][5:] and cfg["model_args"] == table["model_args"]
    assert cfg["num_classes"] == 6 and cfg["pretrained_cfg"]["classifier"] == head

    run_push(d, "org/clf")
    run_push(save_model(clf.encoder, tmp_path / "enc"), "org/enc")
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    model = timm.create_model("hf_hub:org/clf", pretrained=True).eval()
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    xn = (x - mean) / std
    with torch.no_grad():
        torch.testing.assert_close(model(xn), clf(x))  # the fine-tuned head came along
        features = timm.create_model("hf_hub:org/clf", pretrained=True, num_classes=0).eval()(xn)
        torch.testing.assert_close(features, clf.encoder(x))
        encoder = timm.create_model("hf_hub:org/enc", pretrained=True).eval()
        assert encoder.num_classes == 0
        torch.testing.assert_close(encoder(xn), clf.encoder(x))
        assert torch.equal(load_model("hf-hub:org/clf")(x), clf(x))  # and urrlkit's own loader, bit for bit


def test_files_of_the_older_prefixed_layout_still_load_for_timm(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    clf = trained_like(Classifier(build_encoder(**CONVNEXT), 4))
    d = save_model(clf, tmp_path / "m")
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(d / "model.safetensors"))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_model(d)(x), clf(x))


def test_card_describes_a_timm_backbone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    d = save_model(Classifier(build_encoder(**VIT), 10), tmp_path / "m", stage="finetune")
    cfg = json.loads((d / "config.json").read_text())
    cfg["recipe"] = {"data": {"dataset": "cifar10-sample", "image_size": 32, "batch_size": 64},
                     "model": VIT, "pretext": {"method": "moco_v2", "p": 0.5, "queue_size": 512},
                     "optim": {"lr": 0.06, "epochs": 1}}
    card = render_card("org/vit", cfg)
    text = ModelCard(str(card)).text
    assert "| Architecture | `timm:vit_tiny_patch16_224 (img 32, patch_size 8)` |" in text
    assert 'timm.create_model("hf_hub:org/vit", pretrained=True)' in text
    assert "torchvision.models." not in text and "BasicBlock" not in text  # nothing ResNet-specific
    assert "MoCo v2 (InfoNCE with a momentum key encoder and a queue)" in text  # the method plugin's summary
    assert "`augmix_allop` (probability 0.50), `moco_v2` (probability 0.50)" in text
    card.save(d / "README.md")
    assert card_summary(d)[0].startswith("classifier: timm:vit_tiny_patch16_224 (img 32, patch_size 8), 192-d")


def test_card_of_an_older_flat_pretext_recipe_renders() -> None:
    """A recipe recorded by an older urrlkit: flat [pretext] with head_dim etc. and a method this install may
    not validate that way; the card falls back to p for the families."""
    cfg = {"kind": "encoder", "feature_dim": 128, "num_classes": 0,
           "encoder": {"backbone": "resnet10", "small_stem": True, "width": 16, "mean": [0.5] * 3, "std": [0.5] * 3},
           "recipe": {"data": {"dataset": "cifar10", "image_size": 32},
                      "pretext": {"method": "moco_v2", "p": 0.5, "head_dim": 64, "queue_size": 512,
                                  "pirl_lambda": 0.5, "bank_size": 10},
                      "optim": {"lr": 0.06}}}
    text = ModelCard(str(render_card("org/old", cfg))).text
    assert "`augmix_allop` (probability 0.50)" in text and "head_dim 64" in text
    assert "| Architecture | `resnet10, width 16, 3×3 stem` |" in text
    assert "timm cannot build this backbone by name" in text and "3×3 stride-1 convolution" in text
