"""`timm:<name>` backbones (urrlkit/backbones/timm.py): torch-free validation, errors that name the field, the
meta-device size bound, save → load identity, and timm's own weights (safetensors only) through the stand-in Hub."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save
from standin_hub import StandinHub

from urrlkit.config import load
from urrlkit.errors import CheckpointError
from urrlkit.hub import load_model, save_model
from urrlkit.models import Classifier, build_encoder, encoder_from_settings, settings_of
from urrlkit.models.backbones import check_input_size

ROOT = Path(__file__).resolve().parents[2]
VIT = {"backbone": "timm:vit_tiny_patch16_224", "model_args": {"img_size": 32, "patch_size": 8}}
CONVNEXT = {"backbone": "timm:convnext_atto", "model_args": {"depths": [1, 1, 1, 1], "dims": [16, 32, 64, 128]}}


def recipe_file(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(f'extends = "{(ROOT / "recipes" / "quickstart.toml").as_posix()}"\n{model}')
    return path


def test_validation_imports_neither_torch_nor_timm(tmp_path: Path) -> None:
    path = recipe_file(tmp_path, '[model]\nbackbone = "timm:vit_tiny_patch16_224"\n'
                                 "model_args = { img_size = 32, patch_size = 8 }\n")
    probe = ("import sys\nimport urrlkit.config as c\n"
             f"r = c.load({str(path)!r})\n"
             "assert r.model.describe() == 'timm:vit_tiny_patch16_224 (img 32, patch_size 8)', r.model.describe()\n"
             "assert r.model.default_input_size() == 32\n"
             "heavy = sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)\n"
             "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("table", "field"), [
    ({"backbone": "timm:Vit-Tiny"}, "model.backbone"),
    ({"backbone": "timm:"}, "model.backbone"),
    ({"backbone": "timm:hf_hub:org/x"}, "model.backbone"),  # no Hub or local-dir name reaches timm
    ({**VIT, "model_args": {"img_size": 99999}}, "model.model_args.img_size"),
    ({**VIT, "model_args": {"img_size": [32, 32]}}, "model.model_args.img_size"),
    ({**VIT, "model_args": {"checkpoint_path": "x.pth"}}, "model.model_args.checkpoint_path"),
    ({**VIT, "model_args": {"num_classes": 10}}, "model.model_args.num_classes"),
    ({**VIT, "model_args": {"act_layer": {"a": 1}}}, "model.model_args.act_layer"),
    ({**VIT, "global_pool": ""}, "model.global_pool"),
    ({**VIT, "small_stem": True}, "model.small_stem"),  # a ResNet's field is an unknown key here
])
def test_bad_settings_name_the_field(table: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}"):
        settings_of(table)


@pytest.mark.parametrize(("table", "message"), [
    ({"backbone": "timm:vit_tiny_patch16_22"}, r"^model\.backbone: unknown timm model 'vit_tiny_patch16_22' "
                                               r"\(did you mean 'vit_tiny_patch16_224'\?\)$"),
    ({"backbone": "timm:vit_tiny_patch16_224.no_such_tag"}, r"^model\.backbone: timm has no pretrained tag"),
    ({**VIT, "model_args": {"bogus": 1}}, r"^model\.model_args: timm cannot build vit_tiny_patch16_224 .*bogus"),
    # ~10^11 parameters: refused after a meta-device build, before anything is allocated
    ({**VIT, "model_args": {"embed_dim": 30000, "num_heads": 1}}, r"^model\.model_args: .* parameters; at most"),
])
def test_build_errors_are_one_line_naming_the_field(table: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        encoder_from_settings(settings_of(table))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("model", "dim", "head", "size"), [
    ('[model]\nbackbone = "timm:vit_tiny_patch16_224"\nmodel_args = { img_size = 32, patch_size = 8 }\n',
     192, "head", 32),
    ('[model]\nbackbone = "timm:convnext_atto"\nmodel_args = { depths = [1, 1, 1, 1], dims = [16, 32, 64, 128] }\n',
     128, "head.fc", None),
])
def test_a_recipe_builds_the_timm_model(tmp_path: Path, model: str, dim: int, head: str, size: int | None) -> None:
    import timm

    recipe = load(recipe_file(tmp_path, model))
    torch.manual_seed(0)
    enc = encoder_from_settings(recipe.model).eval()
    assert (enc.feature_dim, enc.head_name, enc.input_size) == (dim, head, size)
    assert type(enc.trunk).__module__.startswith("timm.")
    cfg = timm.data.resolve_model_data_config(enc.trunk)
    assert enc.spec["mean"] == list(cfg["mean"]) and enc.spec["std"] == list(cfg["std"])
    with torch.no_grad():
        assert enc(torch.rand(2, 3, 32, 32)).shape == (2, dim)
    # the spec validates back through the same settings class and rebuilds the same architecture
    assert settings_of({k: v for k, v in enc.spec.items() if k not in ("mean", "std", "feature_dim")}) == recipe.model


def test_a_vit_says_which_image_side_it_takes() -> None:
    enc = build_encoder(**VIT)
    check_input_size(enc, 32)
    with pytest.raises(ValueError, match=r"^data.image_size = 64, but the model \(timm:vit_tiny_patch16_224 "
                                         r"\(img 32, patch_size 8\)\) takes 32 px images only"):
        check_input_size(enc, 64)
    check_input_size(build_encoder(**CONVNEXT), 64)  # a ConvNeXt takes any size


@pytest.mark.parametrize("table", [VIT, CONVNEXT], ids=["vit", "convnext"])
def test_save_load_gives_identical_outputs(tmp_path: Path, table: dict) -> None:
    torch.manual_seed(0)
    clf = Classifier(build_encoder(**table), 5).eval()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for name, model in (("enc", clf.encoder), ("clf", clf)):
        loaded = load_model(save_model(model, tmp_path / name))
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))


def test_a_config_naming_an_unknown_timm_model_fails_on_one_line(tmp_path: Path) -> None:
    d = save_model(build_encoder(**CONVNEXT), tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["encoder"]["backbone"] = "timm:convnext_attoo"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config.json: config encoder.backbone: unknown timm model "
                                              r"'convnext_attoo' \(did you mean 'convnext_atto'\?\)$"):
        load_model(d)


# ------------------------------------------------------------------- timm's own weights: safetensors only


@pytest.fixture
def timm_hub(standin_hub: StandinHub, hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> StandinHub:
    """The stand-in Hub as huggingface_hub's defaults: timm's weights are fetched as timm fetches them, with the
    endpoint and cache huggingface_hub read at import, which a user sets before starting Python; the test sets
    what that import would have computed (and so never touches the developer's real cache)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_env / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", standin_hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        standin_hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    return standin_hub


def timm_weights(name: str) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(3)
    return {k: v.contiguous() for k, v in timm.create_model(name).state_dict().items()}


def test_pretrained_loads_timm_safetensors_from_the_hub(timm_hub: StandinHub) -> None:
    weights = timm_weights("test_vit")  # timm's test model: its pretrained config names timm/test_vit.r160_in1k
    timm_hub.seed("timm/test_vit.r160_in1k", {"model.safetensors": save(weights)})
    enc = build_encoder("timm:test_vit", pretrained=True)
    state = enc.trunk.state_dict()
    assert state.keys() == {k for k in weights if not k.startswith("head.")}  # timm dropped the 1000-class head
    assert all(torch.equal(state[k], weights[k]) for k in state)
    assert enc.spec["pretrained"] is True
    assert [c.path for c in timm_hub.calls if c.path.endswith("/model.safetensors")] != []


def test_pickle_only_timm_weights_are_refused(timm_hub: StandinHub) -> None:
    buf = io.BytesIO()
    torch.save(timm_weights("test_convnext"), buf)
    timm_hub.seed("timm/test_convnext.r160_in1k", {"pytorch_model.bin": buf.getvalue()})
    with pytest.raises(ValueError, match=r"^model\.pretrained: timm's weights for test_convnext: "
                                         r"timm/test_convnext.r160_in1k/model.safetensors: the repo has no such "
                                         r"file .*never a pickle"):
        build_encoder("timm:test_convnext", pretrained=True)
    assert not any(c.path.endswith("pytorch_model.bin") for c in timm_hub.calls)  # never even downloaded


def test_pretrained_offline_without_a_cached_copy_is_refused(timm_hub: StandinHub,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # HF_HUB_OFFLINE=1 when Python started
    with pytest.raises(ValueError, match=r"^model\.pretrained: .*not in the local Hugging Face cache and "
                                         r"HF_HUB_OFFLINE=1 is set$"):
        build_encoder("timm:test_vit", pretrained=True)
    assert timm_hub.calls == []


def test_a_saved_pretrained_model_loads_without_the_network(timm_hub: StandinHub, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    timm_hub.seed("timm/test_vit.r160_in1k", {"model.safetensors": save(timm_weights("test_vit"))})
    enc = build_encoder("timm:test_vit", pretrained=True).eval()
    d = save_model(enc, tmp_path / "m")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    calls = len(timm_hub.calls)
    loaded = load_model(d)  # rebuilt without timm's weights (the file's replace them): nothing fetched
    assert loaded.spec["pretrained"] is True and len(timm_hub.calls) == calls
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.equal(loaded(x), enc(x))
