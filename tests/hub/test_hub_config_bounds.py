"""Memory bombs: a model's config.json is bounded and checked against the safetensors header before anything
is allocated; mismatches name the file, the first tensor and both shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from urrlkit.errors import CheckpointError
from urrlkit.hub import load_backbone, load_model, save_model
from urrlkit.models import Classifier, build_encoder


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_model(build_encoder("resnet10", small_stem=True, width=8), tmp_path / "m")


def edit(d: Path, **encoder: object) -> None:
    cfg = json.loads((d / "config.json").read_text())
    for k, v in encoder.items():
        if k in ("kind", "num_classes"):
            cfg[k] = v
        else:
            cfg["encoder"][k] = v
    (d / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(("change", "field"), [
    ({"width": 10**6}, "encoder.width"), ({"width": 0}, "encoder.width"), ({"width": "8"}, "encoder.width"),
    ({"width": 8.5}, "encoder.width"), ({"width": True}, "encoder.width"),
    ({"backbone": "resnet1000"}, "encoder.backbone"), ({"backbone": ["resnet10"]}, "encoder.backbone"),
    ({"small_stem": "yes"}, "encoder.small_stem"), ({"mean": [0.5, 0.5]}, "encoder.mean"),
    ({"std": [0.2, 0.0, 0.2]}, "encoder.std"), ({"std": "x"}, "encoder.std"),
    ({"kind": "classifier", "num_classes": 10**9}, "num_classes"),
    ({"kind": "classifier", "num_classes": None}, "num_classes"), ({"kind": "regressor"}, "kind"),
])
def test_config_fields_are_bounded(model_dir: Path, change: dict, field: str) -> None:
    edit(model_dir, **change)
    with pytest.raises(CheckpointError) as info:
        load_model(model_dir)
    msg = str(info.value)
    assert str(model_dir / "config.json") in msg and field in msg and "\n" not in msg


def test_weights_of_another_shape_name_file_tensor_and_shapes(model_dir: Path) -> None:
    edit(model_dir, width=256)  # allowed, but the weights are width 8: caught from the header alone
    with pytest.raises(CheckpointError) as info:
        load_backbone(model_dir)
    assert str(info.value) == (f"{model_dir / 'model.safetensors'}: weights do not match the config (tensor "
                               "conv1.weight has shape [8, 3, 3, 3], the config's model needs [256, 3, 3, 3])")


def test_missing_and_extra_tensors_are_named(model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(model_dir / "model.safetensors"))
    save_file({**state, "evil.extra": torch.zeros(2)}, str(model_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected tensor evil\.extra"):
        load_backbone(model_dir)
    state.pop("trunk.fc.weight", None)
    first = sorted(state)[0]
    save_file({k: v for k, v in state.items() if k != first}, str(model_dir / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"tensor {first} is missing"):
        load_backbone(model_dir)


def test_classifier_head_shape_is_checked(tmp_path: Path) -> None:
    torch.manual_seed(0)
    d = save_model(Classifier(build_encoder("resnet10", small_stem=True, width=8), 10), tmp_path / "c")
    edit(d, num_classes=1000)
    with pytest.raises(CheckpointError, match=r"fc\.weight has shape \[10, 64\], the config's model needs "
                                              r"\[1000, 64\]"):
        load_model(d)


def test_a_huge_width_fails_fast_without_allocating(model_dir: Path) -> None:
    """In a fresh process: width 10**6 (refused by the config bounds) and width 256 (refused by the header
    check) fail with one line each, and the process's peak memory grows by less than 50 MB — nothing was
    allocated for the model the config asks for. (Time is not asserted: speed lives in benchmarks.)"""
    code = f"""
import json, resource, sys, time
from pathlib import Path
import torch
from urrlkit.hub import load_backbone
from urrlkit.errors import CheckpointError
d = Path({str(model_dir)!r})
cfg = json.loads((d / "config.json").read_text())
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for width in (10**6, 256):
    cfg["encoder"]["width"] = width
    (d / "config.json").write_text(json.dumps(cfg))
    t0 = time.perf_counter()
    try:
        load_backbone(d)
    except CheckpointError as exc:
        print(width, round(time.perf_counter() - t0, 3), exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3, proc.stderr[-2000:]
    assert lines[0].startswith("1000000 ") and lines[1].startswith("256 ")
    assert int(lines[-1]) < 50, f"peak memory grew by {lines[-1]} MB"
