"""Contract tests: the real huggingface_hub client, driven by urrlkit, against the stand-in Hub on 127.0.0.1.

The stand-in (tests/standin_hub.py) is a TEST FIXTURE implementing the endpoints the client calls; urrlkit
only sees HF_ENDPOINT. These tests check push → pull → load with identical outputs, the card and its
metadata, offline cache hits, refusals (pickle-only, missing repo, wrong revision) and token hygiene.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from standin_hub import StandinHub
from typer.testing import CliRunner

from urrlkit.cli import app
from urrlkit.config import Recipe
from urrlkit.errors import HubError
from urrlkit.hub import build_upload_folder, load_backbone, load_model, run_pull, run_push, save_model
from urrlkit.models import Classifier, Encoder, build_encoder

TOKEN = "hf_standinSECRETtoken0123456789"

RESULTS = {
    "model": "runs/quick", "recipe_hash": "x", "dataset": "cifar10",
    "metrics": {
        "clean": {"top1": 41.5, "n": 1000},
        "calibration": {"rms": 12.3, "rms_legacy": 11.9, "ece": 9.1, "bin_size": 100},
        "adversarial": {"robust_top1": 10.25, "eps": 0.5, "steps": 20, "step_size": 0.0625},
        "corruptions": {"benchmark": "cifar10-c", "error": 60.1, "mce": None, "rms_calibration": 20.5,
                        "per_corruption": {"gaussian_noise": {"errors": [70.0]}, "fog": {"errors": [50.2]}}},
    },
}


def make_run(root: Path, with_results: bool = True) -> tuple[Path, Encoder]:
    """A run directory as the engine writes it, with an untrained tiny encoder (no training needed)."""
    torch.manual_seed(0)
    enc = build_encoder("resnet10", small_stem=True, width=8).eval()
    recipe = Recipe.model_validate({"run": {"name": root.name}, "pretext": {"p": 0.5},
                                    "finetune": {"regularizer": {"type": "sim", "weight": 1.0}}})
    save_model(enc, root / "model", recipe, stage="pretrain")
    (root / "recipe.toml").write_text(recipe.to_toml())
    if with_results:
        (root / "eval").mkdir()
        (root / "eval" / "results.json").write_text(json.dumps(RESULTS))
    return root, enc


@pytest.fixture(autouse=True)
def logged_in(hf_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes need a token, as on the Hub; it arrives the standard way (HF_TOKEN), never via urrlkit."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)


@pytest.fixture
def run(tmp_path: Path) -> tuple[Path, Encoder]:
    return make_run(tmp_path / "quick")


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_push_pull_load_gives_identical_outputs(standin_hub: StandinHub, run: tuple[Path, Encoder],
                                                x: torch.Tensor, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, enc = run
    url = run_push(run_dir, "org/quick")
    assert "/org/quick/commit/" in url
    # One commit on top of the repo's initial one, holding everything.
    repo = standin_hub.repos["org/quick"]
    assert len(repo.commits) == 2 and len(standin_hub.commit_payloads) == 1
    assert set(standin_hub.files("org/quick")) == {".gitattributes", "model.safetensors", "config.json",
                                                   "README.md", "eval/results.json", "recipe.toml"}
    folder = run_pull("org/quick")
    out = capsys.readouterr().out
    assert str(folder) in out and "Top-1 accuracy (clean) on cifar10: 41.5" in out
    assert folder.is_relative_to(Path(os.environ["HF_HOME"]) / "hub")  # the standard cache
    for name in ("hf-hub:org/quick", "org/quick", f"hf-hub:org/quick@{repo.refs['main']}"):
        loaded = load_backbone(name)
        assert torch.equal(loaded(x), enc(x)), name
    assert standin_hub.unknown == []


def test_card_metadata_carries_the_metrics(standin_hub: StandinHub, run: tuple[Path, Encoder]) -> None:
    run_push(run[0], "org/quick")
    card = ModelCard(standin_hub.files("org/quick")["README.md"].decode())
    assert card.data.library_name == "urrlkit" and card.data.license == "apache-2.0"
    got = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert got[("cifar10", "accuracy")] == 41.5
    assert got[("cifar10", "robust_accuracy")] == 10.25
    assert got[("cifar10", "rms_calibration_error")] == 12.3
    assert got[("cifar10-c", "error")] == 60.1
    robust = next(r for r in card.data.eval_results if r.metric_type == "robust_accuracy")
    assert robust.metric_args == {"eps": 0.5, "steps": 20, "step_size": 0.0625}
    text = card.text
    assert "augmix_allop" in text and "p (probability of T_rob per view) | 0.5" in text
    assert "similarity regularization (Eq. 4), λ = 1.0" in text
    assert 'load_backbone("hf-hub:org/quick")' in text and "@misc{urrl2021" in text


def test_dry_run_writes_exactly_what_is_uploaded(standin_hub: StandinHub, run: tuple[Path, Encoder],
                                                 tmp_path: Path) -> None:
    run_push(run[0], "org/quick", dry_run=tmp_path / "dry")
    assert standin_hub.calls == []  # a dry run talks to nobody
    run_push(run[0], "org/quick")
    uploaded = {k: v for k, v in standin_hub.files("org/quick").items() if k != ".gitattributes"}
    assert files_under(tmp_path / "dry") == uploaded
    assert (tmp_path / "dry" / "config.json").read_bytes() == (run[0] / "model" / "config.json").read_bytes()


def test_dry_run_refuses_a_non_empty_folder(run: tuple[Path, Encoder], tmp_path: Path) -> None:
    (tmp_path / "dry").mkdir()
    (tmp_path / "dry" / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="not empty"):
        run_push(run[0], "org/quick", dry_run=tmp_path / "dry")


def test_token_is_used_but_never_written_or_printed(standin_hub: StandinHub, run: tuple[Path, Encoder],
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    run_push(run[0], "org/quick", dry_run=tmp_path / "dry")
    run_push(run[0], "org/quick", private=True)
    run_pull("org/quick")
    # The standard login mechanism supplied it to the server ...
    assert {c.authorization for c in standin_hub.calls} == {f"Bearer {TOKEN}"}
    # ... and it is nowhere else.
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text
    blobs = [*files_under(tmp_path / "dry").values(), *standin_hub.files("org/quick").values()]
    blobs += [p.read_bytes() for p in Path(os.environ["HF_HOME"]).rglob("*") if p.is_file()]
    assert not any(TOKEN.encode() in b for b in blobs)


def test_private_repo_needs_the_token(standin_hub: StandinHub, run: tuple[Path, Encoder],
                                      monkeypatch: pytest.MonkeyPatch, x: torch.Tensor) -> None:
    run_push(run[0], "org/secret", private=True)
    assert standin_hub.repos["org/secret"].private
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match=r"org/secret: no such Hub model repo \(if it is private"):
        load_backbone("org/secret")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert torch.equal(load_backbone("org/secret")(x), run[1](x))


def test_push_without_login_is_one_clear_line(standin_hub: StandinHub, run: tuple[Path, Encoder],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError) as exc:
        run_push(run[0], "org/quick")
    assert str(exc.value) == ("org/quick: not allowed to write there; log in with `hf auth login` or set "
                              "HF_TOKEN to a token with write access")


def test_offline_loads_from_cache_without_any_request(standin_hub: StandinHub, run: tuple[Path, Encoder],
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      x: torch.Tensor) -> None:
    run_push(run[0], "org/quick")
    run_pull("org/quick")
    before = len(standin_hub.calls)
    standin_hub.stop()  # nothing to talk to any more
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert torch.equal(load_backbone("hf-hub:org/quick")(x), run[1](x))
    assert len(standin_hub.calls) == before
    with pytest.raises(HubError) as exc:
        load_backbone("hf-hub:org/never-pulled")
    msg = str(exc.value)
    assert "\n" not in msg and "org/never-pulled" in msg and "HF_HUB_OFFLINE=1" in msg


def test_pickle_only_repo_is_refused_and_never_downloaded(standin_hub: StandinHub) -> None:
    standin_hub.seed("org/legacy", {"pytorch_model.bin": b"\x80\x04 not for us", "config.json": b"{}"})
    with pytest.raises(HubError, match=r"org/legacy: offers only pickle weights \(pytorch_model\.bin\)"):
        load_backbone("hf-hub:org/legacy")
    assert not any(c.path.endswith("pytorch_model.bin") and "/resolve/" in c.path for c in standin_hub.calls)


def test_missing_repo_and_wrong_revision(standin_hub: StandinHub, run: tuple[Path, Encoder]) -> None:
    with pytest.raises(HubError, match=r"^org/missing: no such Hub model repo"):
        load_model("hf-hub:org/missing")
    run_push(run[0], "org/quick")
    with pytest.raises(HubError, match=r"^org/quick@nope: Hub repo org/quick has no revision 'nope'$"):
        load_model("org/quick@nope")
    with pytest.raises(HubError, match="no revision 'v9'"):
        run_pull("org/quick", revision="v9")


def test_push_to_a_branch(standin_hub: StandinHub, run: tuple[Path, Encoder], x: torch.Tensor) -> None:
    run_push(run[0], "org/quick", revision="dev")
    assert "model.safetensors" not in standin_hub.files("org/quick", "main")
    with pytest.raises(HubError, match=r"org/quick: the repo has no model\.safetensors"):
        load_backbone("org/quick")
    assert torch.equal(load_backbone("hf-hub:org/quick@dev")(x), run[1](x))
    assert torch.equal(load_backbone("org/quick", revision="dev")(x), run[1](x))


def test_repush_without_results_removes_stale_ones(standin_hub: StandinHub, tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path / "r1")
    run_push(run_dir, "org/quick")
    (run_dir / "eval" / "results.json").unlink()
    run_push(run_dir, "org/quick")
    files = standin_hub.files("org/quick")
    assert "eval/results.json" not in files and b"No evaluation results were recorded" in files["README.md"]


def test_classifier_model_dir_and_card_without_results(standin_hub: StandinHub, tmp_path: Path,
                                                       x: torch.Tensor) -> None:
    clf = Classifier(build_encoder("resnet10", small_stem=True, width=8), 10).eval()
    save_model(clf, tmp_path / "clf")
    names = build_upload_folder(tmp_path / "clf", "org/clf", tmp_path / "up")
    assert names == ["README.md", "config.json", "model.safetensors"]
    run_push(tmp_path / "clf", "org/clf")
    model = load_model("org/clf")
    assert isinstance(model, Classifier) and torch.equal(model(x), clf(x))
    card = ModelCard((tmp_path / "up" / "README.md").read_text())
    assert card.data.pipeline_tag == "image-classification" and not card.data.eval_results


def test_cli_push_pull_and_errors(standin_hub: StandinHub, run: tuple[Path, Encoder], tmp_path: Path) -> None:
    cli = CliRunner()
    res = cli.invoke(app, ["push", str(run[0]), "--repo", "org/cli", "--dry-run", str(tmp_path / "dry")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "dry" / "README.md").is_file() and "org/cli" not in standin_hub.repos
    res = cli.invoke(app, ["push", str(run[0]), "--repo", "org/cli", "--private", "--revision", "main"])
    assert res.exit_code == 0, res.output
    res = cli.invoke(app, ["pull", "hf-hub:org/cli"])
    assert res.exit_code == 0 and "models--org--cli" in res.stdout and "Robust top-1 accuracy" in res.stdout
    res = cli.invoke(app, ["pull", "org/nothing-here"])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and "org/nothing-here" in res.stderr


OFFLINE_SCRIPT = """
import json
from typer.testing import CliRunner
from urrlkit.cli import app
runs = [CliRunner().invoke(app, ["pull", name]) for name in ("org/quick", "org/unknown")]
print(json.dumps([[r.exit_code, r.stdout, r.stderr] for r in runs]))
"""


def test_real_offline_env_in_a_fresh_process(standin_hub: StandinHub, run: tuple[Path, Encoder]) -> None:
    """HF_HUB_OFFLINE=1 set before Python starts, as a user would (huggingface_hub reads it at import)."""
    run_push(run[0], "org/quick")
    run_pull("org/quick")
    # Port 9 (discard) on localhost: nothing listens, so any request would fail loudly.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (code_ok, out_ok, _), (code_bad, _, err_bad) = json.loads(proc.stdout.splitlines()[-1])
    assert code_ok == 0 and "snapshots" in out_ok and "Top-1 accuracy (clean)" in out_ok
    assert code_bad == 2 and err_bad.count("\n") == 1
    assert "org/unknown" in err_bad and "HF_HUB_OFFLINE=1" in err_bad
