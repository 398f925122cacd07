"""A package outside urrlkit adds a pretraining method and a backbone through Python entry points, and the `urrl`
command uses them: the package is written here, installed with pip (into a folder of its own, as `pip install`
does into a site-packages), and `urrl recipe validate`, `urrl pretrain` and `urrl eval` run with it.

This is the walk-through of docs/plugins.md, as a test: a method is one module (its settings, `build` and
`forward`), a backbone one class, each registered by one line of the package's pyproject.toml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "urrl-demo-plugin"
version = "0.1.0"
dependencies = ["urrlkit"]

[project.entry-points."urrlkit.pretexts"]
align_spread = "urrl_demo.method:AlignSpread"

[project.entry-points."urrlkit.backbones"]
tiny_cnn = "urrl_demo.backbone:TinyCNN"
"""

# The method: alignment of the two views' embeddings plus a spread term that keeps them from collapsing
# (the alignment / uniformity objective of Wang & Isola 2020, Eq. 5 with α = 2, t = 2), on a linear projector.
METHOD = '''
from __future__ import annotations

from typing import Literal

from pydantic import Field

from urrlkit.config.pretext import MethodSettings


class AlignSpread(MethodSettings):
    """Alignment + uniformity (Wang & Isola 2020) on a linear projection."""

    method: Literal["align_spread"] = "align_spread"
    dim: int = Field(16, ge=2, le=1024)
    uniformity_weight: float = Field(1.0, ge=0)
    summary = "alignment + uniformity (a plugin)"

    def build(self, encoder, ctx):
        from torch import nn

        return {"projector": nn.Linear(encoder.feature_dim, self.dim)}

    def forward(self, model, views, index, progress):
        import torch
        import torch.nn.functional as F

        from urrlkit.engine.progress import StepOutput

        feats = model.encoder(views[0])
        z1 = F.normalize(model.parts["projector"](feats), dim=1)
        z2 = F.normalize(model.parts["projector"](model.encoder(views[1])), dim=1)
        align = (z1 - z2).pow(2).sum(1).mean()
        uniform = torch.pdist(torch.cat([z1, z2])).pow(2).mul(-2).exp().mean().log()
        return StepOutput(align + self.uniformity_weight * uniform, features=feats, embeddings=(z1, z2),
                          stats={"align": align.detach()})
'''

BACKBONE = '''
from __future__ import annotations

from typing import Literal

from pydantic import Field

from urrlkit.config.model import BackboneSettings


class TinyCNN(BackboneSettings):
    """Two 3×3 convolutions and global pooling."""

    backbone: Literal["tiny_cnn"] = "tiny_cnn"
    channels: int = Field(8, ge=1, le=256)

    def build(self):
        from torch import nn

        from urrlkit.models import Encoder

        c = self.channels
        trunk = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                              nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten())
        enc = Encoder(trunk, 2 * c)
        enc.spec = {**self.model_dump(exclude_none=True), "feature_dim": 2 * c,
                    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
        return enc
'''

RECIPE = """
extends = "{quickstart}"

[run]
name = "plugin"
output_dir = "{out}"
trackers = []

[data]
train_limit = 128
test_limit = 64
batch_size = 32

[model]
backbone = "tiny_cnn"
channels = 6

[pretext]
method = "align_spread"
dim = 8
p = 0.5

[optim]
epochs = 2
log_every = 2

[monitor]
linear = true
knn = false

[linear_eval]
epochs = 2
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo package, pip-installed (metadata and entry points included) into a folder of its own."""
    src = tmp_path_factory.mktemp("plugin_src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    pkg = src / "urrl_demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "method.py").write_text(textwrap.dedent(METHOD))
    (pkg / "backbone.py").write_text(textwrap.dedent(BACKBONE))
    site = tmp_path_factory.mktemp("plugin_site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--no-index", "--target", str(site), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(site.glob("urrl_demo_plugin-*.dist-info/entry_points.txt"))
    return site


def urrl(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "urrlkit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_a_plugin_package_adds_a_method_and_a_backbone_the_cli_runs(plugin_site: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "plugin.toml"
    recipe.write_text(RECIPE.format(quickstart=ROOT / "recipes" / "quickstart.toml", out=tmp_path / "runs"))
    done = urrl(plugin_site, "recipe", "validate", str(recipe), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # The plugin's own fields are checked as the built-in ones are, naming the method and its keys.
    bad = urrl(plugin_site, "recipe", "validate", str(recipe), "--set", "pretext.queue_size=64", cwd=tmp_path)
    assert bad.returncode == 2
    assert "unknown key pretext.queue_size for method 'align_spread'; allowed here: method, views, p, families, " \
           "dim, uniformity_weight" in bad.stderr
    bad = urrl(plugin_site, "recipe", "validate", str(recipe), "--set", "model.channels=0", cwd=tmp_path)
    assert bad.returncode == 2 and "model.channels = 0 is out of range" in bad.stderr

    done = urrl(plugin_site, "pretrain", str(recipe), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "plugin"
    config = json.loads((run / "model" / "config.json").read_text())
    assert config["encoder"]["backbone"] == "tiny_cnn" and config["encoder"]["channels"] == 6
    assert config["method"] == "align_spread"
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("stage") == "pretrain" and "loss" in r]
    assert steps and all("probe_loss" in r and "align" in r for r in steps)  # the probe read its features
    assert any("emb_std" in r for r in records)  # and the health monitor its embeddings
    assert (run / "linear" / "eval" / "results.json").is_file()
    # The linear-evaluated model loads back through the plugin's settings class, as a Hub model would.
    done = urrl(plugin_site, "eval", str(run / "linear" / "model"), "--recipe", str(recipe), "--suite", "clean",
                "--out", str(tmp_path / "eval"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_without_the_package_the_names_are_unknown(tmp_path: Path) -> None:
    recipe = tmp_path / "plugin.toml"
    recipe.write_text(RECIPE.format(quickstart=ROOT / "recipes" / "quickstart.toml", out=tmp_path / "runs"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "urrlkit.cli", "recipe", "validate", str(recipe)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 2
    assert "model.backbone = 'tiny_cnn' is not allowed" in done.stderr or "pretext.method" in done.stderr
