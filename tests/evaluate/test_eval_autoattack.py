"""The autoattack suite (pyautoattack, fra31/auto-attack): it runs on the bundled sample, its robust accuracy is
at most PGD's on the same images and at most the clean accuracy, and it lands beside PGD in results.json, the
CLI table, the model card and the RobustBench claim."""

import json
import sys

import pytest
import torch
from rich.console import Console

from urrlkit.config import validate_dict
from urrlkit.errors import UrrlError
from urrlkit.evaluate.workflow import evaluate_model
from urrlkit.hub.card import eval_table
from urrlkit.models import Classifier, build_encoder

pytest.importorskip("pyautoattack")


def _model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(build_encoder("resnet10", small_stem=True, width=4), 10).eval()


def _recipe(limit: int, eps: float = 0.5) -> object:
    return validate_dict({
        "data": {"dataset": "cifar10-sample", "image_size": 32},
        "eval": {"suites": ["clean", "adversarial", "autoattack"], "batch_size": 64,
                 "adversarial": {"limit": limit, "eps": eps, "steps": 20},
                 "autoattack": {"limit": limit, "eps": eps}},
    })


def _check(m: dict, limit: int, eps: float) -> None:
    pgd, aa = m["adversarial"], m["autoattack"]
    assert aa["n"] == pgd["n"] == limit
    assert (aa["eps"], aa["norm"], aa["version"]) == (eps, "L2", "standard")
    assert aa["clean_top1"] == pgd["clean_top1"]  # the same images, the same model
    assert aa["robust_top1"] <= pgd["robust_top1"] <= pgd["clean_top1"]


def test_autoattack_suite_fast(tmp_path) -> None:
    """A large ε (every clean-correct image falls to APGD-CE, so the ensemble ends early): seconds."""
    recipe = _recipe(16, eps=4.0)
    res = evaluate_model(_model(), recipe, list(recipe.eval.suites), tmp_path, console=Console(quiet=True),
                         robustbench_json=tmp_path / "rb.json")
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert list(on_disk["metrics"]) == ["clean", "adversarial", "autoattack"]  # beside PGD, in run order
    _check(on_disk["metrics"], 16, 4.0)
    assert res["metrics"]["autoattack"] == on_disk["metrics"]["autoattack"]
    rows, evals = eval_table(on_disk)
    names = [r["metric"] for r in rows]
    assert names.index("Robust top-1 accuracy (AutoAttack)") == names.index("Robust top-1 accuracy") + 1
    aa_eval = next(e for e in evals if e.metric_type == "robust_accuracy_autoattack")
    assert aa_eval.metric_value == round(on_disk["metrics"]["autoattack"]["robust_top1"], 2)
    assert aa_eval.metric_args == {"eps": 4.0, "norm": "L2", "version": "standard", "n": 16}
    claim = json.loads((tmp_path / "rb.json").read_text())
    assert claim["eps"] == "4.0" and claim["autoattack_acc"] == str(round(on_disk["metrics"]["autoattack"]
                                                                          ["robust_top1"], 2))


@pytest.mark.slow
def test_autoattack_suite_standard_eps(tmp_path) -> None:
    """RobustBench's CIFAR-10 L2 setting, ε = 0.5, on 32 images of the sample (about a minute on 2 cores)."""
    recipe = _recipe(32)
    evaluate_model(_model(), recipe, list(recipe.eval.suites), tmp_path, console=Console(quiet=True))
    _check(json.loads((tmp_path / "results.json").read_text())["metrics"], 32, 0.5)


def test_missing_package_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyautoattack", None)  # what an environment without the extra looks like
    recipe = _recipe(4)
    with pytest.raises(UrrlError, match=r"pip install 'urrlkit\[autoattack\]'") as exc:
        evaluate_model(_model(), recipe, ["autoattack"], tmp_path, console=Console(quiet=True))
    assert "\n" not in str(exc.value)


def test_autoattack_leaves_the_global_generator_alone(tmp_path) -> None:
    """AutoAttack reseeds torch's global generator before each attack; the suite runs it in a forked state."""
    from urrlkit.evaluate.autoattack import autoattack_accuracy

    model = _model()
    torch.manual_seed(123)
    x = torch.rand(4, 3, 32, 32)
    expected = torch.rand(3)
    torch.manual_seed(123)
    x = torch.rand(4, 3, 32, 32)
    autoattack_accuracy(model, x, torch.zeros(4, dtype=torch.long), eps=4.0, batch_size=4)
    assert torch.equal(torch.rand(3), expected)


def test_cli_autoattack_robustbench_json_and_report(tmp_path) -> None:
    """`urrl eval --suite autoattack --robustbench-json`, then `urrl report` on the claim: the command-line path."""
    from typer.testing import CliRunner

    from urrlkit.cli import app
    from urrlkit.hub import save_model

    run = tmp_path / "runs" / "tiny"
    save_model(_model(), run / "model", recipe=_recipe(8, eps=4.0))
    claim = tmp_path / "model_info" / "cifar10" / "L2" / "TinyRB.json"
    runner = CliRunner()
    r = runner.invoke(app, ["eval", str(run), "--suite", "clean", "--suite", "autoattack",
                            "--set", "data.test_limit=16", "--robustbench-json", str(claim)])
    assert r.exit_code == 0, r.output
    assert "AutoAttack robust top-1" in r.output
    data = json.loads(claim.read_text())
    assert data["dataset"] == "cifar10-sample" and data["eps"] == "4.0" and data["name"] == "tiny"
    r = runner.invoke(app, ["report", str(run), str(claim), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| tiny |" in md and "| TinyRB |" in md  # the run and its claim, side by side
    r = runner.invoke(app, ["eval", str(run), "--suite", "clean", "--robustbench-json", str(claim)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "needs the autoattack suite or a corruption suite" in r.output
