"""Typed results (urrlkit/results.py), the suites registry, and RobustBench model-info claims."""

import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

from urrlkit import registry
from urrlkit.cli import app
from urrlkit.config import validate_dict
from urrlkit.errors import RecipeError, UrrlError
from urrlkit.evaluate.builtin_suites import EvalContext, Suite, get_suite
from urrlkit.evaluate.robustbench import MODEL_INFO_KEYS, from_robustbench, read_robustbench, to_robustbench
from urrlkit.evaluate.suites import plan_suites
from urrlkit.evaluate.workflow import evaluate_model
from urrlkit.hub.card import eval_table
from urrlkit.results import EvalResults, Result, read_results

# A results.json as urrl eval wrote it before the suites became typed objects (urrlkit 0.x, PGD + generated -C),
# and the partial kind older tools and tests write: both must read, and write back exactly as they were.
OLD = {
    "model": "runs/demo/model", "recipe_hash": "0123abcd", "dataset": "cifar10", "image_size": 32,
    "test_limit": None, "urrlkit_version": "0.3.0", "created": "2026-01-01T00:00:00+00:00", "device": "cpu",
    "metrics": {
        "clean": {"top1": 81.5, "n": 10000},
        "calibration": {"rms": 5.25, "rms_legacy": 4.75, "ece": 3.5, "bin_size": 100, "ece_bins": 15, "n": 10000,
                        "reliability": {"edges": [0.0, 0.5, 1.0], "count": [1, 2], "confidence": [0.4, 0.9],
                                        "accuracy": [0.0, 1.0]}},
        "adversarial": {"robust_top1": 30.0, "clean_top1": 80.0, "eps": 0.5, "steps": 20, "step_size": 0.0625,
                        "random_start": False, "use_best": True, "norm": "L2", "attack": "pgd", "n": 1000,
                        "seconds": 12.5},
        "corruptions": {"benchmark": "generated", "source": "cifar10 test split", "severities": [1, 5],
                        "corruptions": ["contrast"], "error": 40.0, "mce": None, "relative_mce": None,
                        "rms_calibration": 9.0, "rms_calibration_pooled": 8.5, "bin_size": 100,
                        "per_corruption": {"contrast": {"errors": [30.0, 50.0], "ce": None, "rms": [8.0, 10.0],
                                                        "n": 64}}},
    },
}
PARTIAL = {"model": "x", "recipe_hash": "abc", "dataset": "cifar10",
           "metrics": {"adversarial": {"robust_top1": 30.0, "clean_top1": 80.0, "eps": 0.5, "future_key": [1]}},
           "future_top_level": {"a": 1}}

# Keys of real RobustBench model-info files (RobustBench/robustbench model_info/…): L2 with a footnote
# (cifar10/L2/Rebuffi2021Fixing_R18_cutmix_ddpm.json) and corruptions with one
# (cifar10/corruptions/Gowal2020Uncovering_L2_70_16_extra.json).
RB_L2 = {"link": "https://arxiv.org/abs/2103.01946",
         "name": "Fixing Data Augmentation to Improve Adversarial Robustness",
         "authors": "Sylvestre-Alvise Rebuffi, Sven Gowal, Dan A. Calian, Florian Stimberg, Olivia Wiles, Timothy Mann",
         "additional_data": False, "number_forward_passes": 1, "dataset": "cifar10", "venue": "arXiv, Mar 2021",
         "architecture": "ResNet-18", "eps": "0.5", "clean_acc": "90.33", "reported": "75.86",
         "footnote": "It uses additional 1M synthetic images in training.", "autoattack_acc": "75.86"}
RB_CORRUPTIONS_KEYS = {"link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
                       "architecture", "eps", "clean_acc", "reported", "corruptions_acc", "footnote"}


@pytest.mark.parametrize("data", [OLD, PARTIAL], ids=["full", "partial"])
def test_old_results_read_and_write_back_unchanged(tmp_path, data) -> None:
    (tmp_path / "results.json").write_text(json.dumps(data))
    r = read_results(tmp_path / "results.json")
    assert json.dumps(r.to_dict()) == json.dumps(data)  # same keys, same order, unknown keys kept
    assert r.metrics.adversarial.robust_top1 == 30.0 and r.metrics.autoattack is None
    rows, _ = eval_table(r)  # the model card reads the typed results
    assert any(row["metric"] == "Robust top-1 accuracy" and row["value"] == "30.00" for row in rows)


def test_fresh_results_have_todays_layout(tmp_path) -> None:
    recipe = validate_dict({"data": {"dataset": "cifar10-sample", "test_limit": 20},
                            "eval": {"batch_size": 64, "adversarial": {"limit": 4, "steps": 1}}})
    import torch

    from urrlkit.models import Classifier, build_encoder

    torch.manual_seed(0)
    model = Classifier(build_encoder("resnet10", small_stem=True, width=4), 10)
    evaluate_model(model, recipe, ["clean", "calibration", "adversarial"], tmp_path, console=Console(quiet=True))
    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data) == ["model", "recipe_hash", "dataset", "image_size", "test_limit", "urrlkit_version",
                          "created", "device", "metrics"]
    assert list(data["metrics"]["calibration"]) == list(OLD["metrics"]["calibration"])
    assert list(data["metrics"]["adversarial"]) == list(OLD["metrics"]["adversarial"])
    assert list(data["metrics"]["clean"]) == ["top1", "n"] and data["metrics"]["clean"]["n"] == 20


def test_not_a_results_file(tmp_path) -> None:
    with pytest.raises(UrrlError, match="no 'metrics'"):
        EvalResults.from_dict({"model": "x"}, "f.json")
    with pytest.raises(UrrlError, match=r"f.json: metrics.clean.top1: "):
        EvalResults.from_dict({"metrics": {"clean": {"top1": "high"}}}, "f.json")


# ------------------------------------------------------------------------------------------------ registry


# The built-in suites, in the order they run (urrlkit/evaluate/builtin_suites.py registers them so).
DECLARED = ("clean", "calibration", "adversarial", "autoattack", "corruptions", "cifar10-c", "cifar100-c",
            "imagenet-c", "tiny-imagenet-c", "all")


def test_every_declared_suite_is_a_registered_suite() -> None:
    assert set(DECLARED) <= set(registry.SUITES.entry_points())  # found as plugins are, without importing
    get_suite("clean")
    assert [n for n in registry.SUITES.in_order() if n in DECLARED] == list(DECLARED)
    for name in DECLARED:
        s = get_suite(name)
        assert isinstance(s, Suite) and s.name == name
        assert (s.run is None) == bool(s.includes)


def test_plan_suites_order_and_groups() -> None:
    r = validate_dict({})
    assert plan_suites(["autoattack", "clean", "adversarial"], r) == (["clean", "adversarial", "autoattack"], None)
    assert plan_suites(["all", "autoattack"], r) == (["clean", "calibration", "adversarial", "autoattack"],
                                                     "generated")
    with pytest.raises(UrrlError, match=r"unknown suite 'autoatack' \(did you mean 'autoattack'\?\)"):
        plan_suites(["autoatack"], r)


def test_recipe_suites_checked_against_the_registry() -> None:
    assert validate_dict({"eval": {"suites": ["autoattack", "cifar10-c", "all"]}}).eval.suites[0] == "autoattack"
    with pytest.raises(RecipeError, match=r"eval.suites\[0\] = 'autoatack' is not allowed \(did you mean "
                                          r"'autoattack'\?\); allowed: clean, calibration, adversarial, autoattack"):
        validate_dict({"eval": {"suites": ["autoatack"]}})


def test_cli_unknown_suite_is_one_line(tmp_path) -> None:
    r = CliRunner().invoke(app, ["eval", str(tmp_path), "--suite", "nope"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "unknown suite 'nope'" in r.output


class _MeanLogit(Result):
    mean_logit: float | None = None
    n: int | None = None


def test_a_users_suite_runs_and_is_written(tmp_path) -> None:
    """Registering a Suite is all it takes: `eval.suites` accepts it and results.json holds its typed result."""
    import torch

    from urrlkit.evaluate.inputs import eval_inputs, loader
    from urrlkit.models import Classifier, build_encoder

    def mean_logit(ctx: EvalContext) -> Result:
        with torch.no_grad():
            outs = [ctx.model(eval_inputs(x, 32, ctx.device)) for x, _ in loader(ctx.need_test(), 64, 0)]
        logits = torch.cat(outs)
        return _MeanLogit(mean_logit=float(logits.mean()), n=int(logits.shape[0]))

    registry.SUITES.add("mean-logit", Suite("mean-logit", "mean_logit", mean_logit))
    try:
        recipe = validate_dict({"data": {"dataset": "cifar10-sample", "test_limit": 8},
                                "eval": {"suites": ["clean", "mean-logit"]}})
        torch.manual_seed(0)
        evaluate_model(Classifier(build_encoder("resnet10", small_stem=True, width=4), 10), recipe,
                       list(recipe.eval.suites), tmp_path, console=Console(quiet=True))
        data = json.loads((tmp_path / "results.json").read_text())
        assert list(data["metrics"]) == ["clean", "mean_logit"] and data["metrics"]["mean_logit"]["n"] == 8
        assert read_results(tmp_path / "results.json").metrics.to_dict()["mean_logit"]["n"] == 8
    finally:
        registry.SUITES._items.pop("mean-logit")


# ------------------------------------------------------------------------------------------------ RobustBench


def _with_aa() -> EvalResults:
    data = json.loads(json.dumps(OLD))
    data["metrics"]["autoattack"] = {"robust_top1": 25.125, "clean_top1": 80.0, "eps": 0.5, "norm": "L2",
                                     "version": "standard", "n": 1000, "seed": 0, "seconds": 99.0}
    del data["metrics"]["corruptions"]
    return EvalResults.from_dict(data)


def test_robustbench_claim_has_robustbench_keys_and_strings() -> None:
    claim = to_robustbench(_with_aa(), name="urrl-sr", architecture="resnet18")
    assert set(claim) == set(RB_L2)
    assert list(claim) == [k for k in MODEL_INFO_KEYS if k in claim]  # RobustBench's ModelInfo order
    assert claim["clean_acc"] == "81.5" and claim["autoattack_acc"] == "25.12" and claim["eps"] == "0.5"
    assert claim["dataset"] == "cifar10" and claim["additional_data"] is False
    assert claim["number_forward_passes"] == 1
    corr = to_robustbench(EvalResults.from_dict(OLD))
    assert set(corr) == RB_CORRUPTIONS_KEYS and corr["eps"] is None and corr["corruptions_acc"] == "60.0"
    assert "not the official -C files" in corr["footnote"]
    with pytest.raises(UrrlError, match="autoattack suite or a corruption suite"):
        to_robustbench(EvalResults.from_dict(PARTIAL | {"metrics": {"clean": {"top1": 1.0}}}))


def test_robustbench_round_trip(tmp_path) -> None:
    path = tmp_path / "model_info" / "cifar10" / "L2" / "Ours.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(to_robustbench(_with_aa())))
    back = read_robustbench(path)
    assert back.metrics.clean.top1 == 81.5 and back.metrics.autoattack.robust_top1 == 25.12
    assert (back.metrics.autoattack.eps, back.metrics.autoattack.norm) == (0.5, "L2")
    real = from_robustbench(RB_L2, "Rebuffi2021Fixing_R18_cutmix_ddpm.json", "L2")
    assert real.metrics.autoattack.robust_top1 == 75.86 and real.dataset == "cifar10"
