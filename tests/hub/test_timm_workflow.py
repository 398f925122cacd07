"""The whole workflow on timm backbones, from the CLI: pretrain a ViT (MoCo v3) and a ConvNeXt (BYOL) with URRL's
family mixing, push to the stand-in Hub, load the pushed encoder with timm's own `hf_hub:` loader, fine-tune it
from its Hub id with similarity regularization (paper Eq. 4), and run the evaluation suites on the result.

ViT-S/16 and ConvNeXt-T are timm's `vit_small_patch16_224` and `convnext_tiny` themselves, on 32-px images (the
ViT's position embedding for a 2×2 patch grid) and a few dozen of the bundled sample's images, about 20 and 30 s on
2 CPU cores; the slow suite adds timm's tiny variants with other patch sizes and stage widths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from standin_hub import StandinHub
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.hub import load_backbone, read_config

ROOT = Path(__file__).resolve().parents[2]

RECIPE = """\
extends = "{quickstart}"

[run]
name = "{name}"
output_dir = "{out}"

[data]
train_limit = 96
test_limit = 48
batch_size = 16

[model]
backbone = "timm:{model}"
model_args = {model_args}

[pretext]
{pretext}

[optim]
optimizer = "adamw"
lr = 0.0005
weight_decay = 0.05
epochs = 1
log_every = 2

[monitor]
knn_train_images = 96

[linear_eval]
epochs = 2

[finetune]
epochs = 1
batch_size = 16
lr = 0.001

[eval]
suites = ["clean", "calibration", "adversarial", "corruptions"]
adversarial = {{ steps = 2, limit = 16 }}
corruptions = {{ corruptions = ["gaussian_noise", "fog"], severities = [1, 3], limit = 8 }}
calibration = {{ bin_size = 16 }}
"""

MOCO_V3 = 'method = "moco_v3"\np = 0.5\ndim = 16\nmlp_dim = 32'
BYOL = 'method = "byol"\np = 0.5\nproj_dim = 16\nproj_hidden = 32\npred_hidden = 32'

FULL = [
    pytest.param("vit_small_patch16_224", "{ img_size = 32, patch_size = 16 }", MOCO_V3, id="vit-s16"),
    pytest.param("convnext_tiny", "{}", BYOL, id="convnext-t"),
]
TINY = [
    pytest.param("vit_tiny_patch16_224", "{ img_size = 32, patch_size = 8 }", MOCO_V3, id="vit-tiny"),
    pytest.param("convnext_atto", "{ depths = [1, 1, 1, 1], dims = [16, 32, 64, 128] }", BYOL, id="convnext-atto"),
]


def workflow(hub: StandinHub, tmp_path: Path, model: str, model_args: str, pretext: str) -> None:
    import timm

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE.format(quickstart=ROOT / "recipes" / "quickstart.toml", name="timm", out=tmp_path,
                                    model=model, model_args=model_args, pretext=pretext))
    cli = CliRunner()
    res = cli.invoke(app, ["pretrain", str(recipe)])
    assert res.exit_code == 0, res.output
    run = tmp_path / "timm"
    config = read_config(run / "model")
    assert config["encoder"]["backbone"] == f"timm:{model}" and config["architecture"] == model

    res = cli.invoke(app, ["push", str(run), "--repo", "org/timm-urrl"])
    assert res.exit_code == 0, res.output
    assert "README.md" in hub.files("org/timm-urrl")

    # timm's own loader builds the architecture from config.json and loads the pushed weights.
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ours = load_backbone(run).eval()
    theirs = timm.create_model("hf_hub:org/timm-urrl", pretrained=True).eval()
    mean = torch.tensor(theirs.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(theirs.pretrained_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(theirs((x - mean) / std), ours(x))

    res = cli.invoke(app, ["finetune", str(recipe), "--from", "hf-hub:org/timm-urrl", "--reg", "sim",
                           "--set", "run.name='ft'"])
    assert res.exit_code == 0, res.output
    tuned = tmp_path / "ft" / "finetune-sim"
    assert read_config(tuned / "model")["source"] == "hf-hub:org/timm-urrl"
    results = json.loads((tuned / "eval" / "results.json").read_text())
    text = json.dumps(results)
    for what in ("clean", "calibration", "adversarial", "gaussian_noise", "fog"):
        assert what in text, (what, sorted(results))

    res = cli.invoke(app, ["eval", str(tuned / "model"), "--recipe", str(recipe), "--suite", "clean",
                           "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "eval" / "results.json").is_file()


@pytest.mark.parametrize(("model", "model_args", "pretext"), FULL)
def test_vit_s16_and_convnext_t_workflow(timm_hub: StandinHub, tmp_path: Path, model: str, model_args: str,
                                         pretext: str) -> None:
    workflow(timm_hub, tmp_path, model, model_args, pretext)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "model_args", "pretext"), TINY)
def test_tiny_timm_backbone_workflow(timm_hub: StandinHub, tmp_path: Path, model: str, model_args: str,
                                     pretext: str) -> None:
    workflow(timm_hub, tmp_path, model, model_args, pretext)
