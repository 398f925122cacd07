"""`urrl convert`: MoCo checkpoints (official layout) → urrlkit model directories, weights_only loads only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.errors import CheckpointError
from urrlkit.hub import load_backbone, read_config, run_convert
from urrlkit.models import build_encoder

SIDE_EFFECTS: list[str] = []


def _record_side_effect() -> str:
    SIDE_EFFECTS.append("ran")
    return "pwned"


class Malicious:
    """Unpickling this would run code: exactly what weights_only=True must refuse."""

    def __reduce__(self) -> tuple:
        return (_record_side_effect, ())


def moco_checkpoint(path: Path, mlp: bool = True, small_stem: bool = True,
                    **extra: object) -> torch.nn.Module:
    """A checkpoint shaped like facebookresearch/moco main_moco.py's, for a tiny ResNet trunk."""
    torch.manual_seed(0)
    trunk = build_encoder("resnet10", small_stem=small_stem, width=8).trunk
    state: dict[str, object] = {f"module.encoder_q.{k}": v for k, v in trunk.state_dict().items()}
    state.update({f"module.encoder_k.{k}": v.clone() for k, v in trunk.state_dict().items()})
    if mlp:
        state.update({"module.encoder_q.fc.0.weight": torch.randn(64, 64), "module.encoder_q.fc.0.bias":
                      torch.zeros(64), "module.encoder_q.fc.2.weight": torch.randn(128, 64),
                      "module.encoder_q.fc.2.bias": torch.zeros(128)})
    else:
        state.update({"module.encoder_q.fc.weight": torch.randn(128, 64),
                      "module.encoder_q.fc.bias": torch.zeros(128)})
    state["module.queue"] = torch.randn(128, 256)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    ckpt = {"epoch": 200, "arch": "resnet10", "state_dict": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "momentum": 0.9, "params": [0, 1]}]}}
    ckpt.update(extra)
    torch.save(ckpt, path)
    return trunk.eval()


@pytest.mark.parametrize("mlp", [True, False])
def test_convert_keeps_the_query_encoder_and_drops_the_head(tmp_path: Path, mlp: bool) -> None:
    trunk = moco_checkpoint(tmp_path / "moco.pth.tar", mlp=mlp)
    run_convert(tmp_path / "moco.pth.tar", tmp_path / "out", backbone="resnet10", small_stem=True)
    enc = load_backbone(tmp_path / "out")
    x = torch.rand(2, 3, 32, 32)
    expected = trunk(enc.normalize(x))  # the official trunk expects normalised input; urrlkit's has it inside
    assert torch.allclose(enc(x), expected, atol=1e-6)
    cfg = read_config(tmp_path / "out")
    assert cfg["converted_from"]["prefix"] == "module.encoder_q." and cfg["converted_from"]["epoch"] == 200
    assert cfg["encoder"]["width"] == 8 and cfg["input_size"] == 32
    card = (tmp_path / "out" / "README.md").read_text()
    assert "moco.pth.tar" in card and "keep the license of their source checkpoint" in card


def test_full_unpickling_is_refused_without_running_anything(tmp_path: Path) -> None:
    moco_checkpoint(tmp_path / "evil.pth", payload=Malicious())
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused: it needs full unpickling"):
        run_convert(tmp_path / "evil.pth", tmp_path / "out", backbone="resnet10", small_stem=True)
    assert SIDE_EFFECTS == [] and not (tmp_path / "out").exists()


def test_arch_and_stem_mismatches_are_named(tmp_path: Path) -> None:
    moco_checkpoint(tmp_path / "moco.pth")
    with pytest.raises(CheckpointError, match="arch is 'resnet10', --backbone says 'resnet50'"):
        run_convert(tmp_path / "moco.pth", tmp_path / "out")
    with pytest.raises(CheckpointError, match=r"conv1 is 3×3; pass --small-stem"):
        run_convert(tmp_path / "moco.pth", tmp_path / "out", backbone="resnet10")


def test_cli_convert(tmp_path: Path) -> None:
    moco_checkpoint(tmp_path / "m.pth.tar", small_stem=False)
    res = CliRunner().invoke(app, ["convert", str(tmp_path / "m.pth.tar"), "--out", str(tmp_path / "o"),
                                   "--backbone", "resnet10"])
    assert res.exit_code == 0, res.output
    assert load_backbone(tmp_path / "o").feature_dim == 64
    res = CliRunner().invoke(app, ["convert", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "absent.pth: checkpoint not found" in res.stderr
