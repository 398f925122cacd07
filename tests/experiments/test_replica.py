"""The replica's infrastructure (urrlkit/experiments/replica/, recipes/replica/): recipes, plan, report — no
training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from urrlkit.config import load
from urrlkit.errors import UrrlError
from urrlkit.experiments import replica

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes" / "replica").glob("*.toml"))


def test_replica_runs_from_the_repository_root() -> None:
    """Steps run with cwd = replica.ROOT and the default report is ROOT/docs/replica.md: the repository root."""
    assert replica.ROOT == ROOT


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_replica_recipes_validate(path: Path) -> None:
    r = load(path)
    # Pretraining and transfer recipes must describe the same encoder (fine-tuning loads the pretrained one).
    assert (r.model.backbone, r.model.width, r.data.image_size) == ("resnet10", 16, 32)


def test_budget_is_what_the_recipes_say() -> None:
    text = "\n".join(replica.describe_budget("cpu"))
    assert "resnet10 width 16" in text and "32 px" in text and "3 epochs" in text
    assert "CIFAR-10, 10,000 labelled training images (10% held out" in text
    assert "on 500 test images" in text and "40 per corruption and severity" in text
    smoke = "\n".join(replica.describe_budget("smoke"))
    assert "256 Tiny-ImageNet training images" in smoke and "1 epochs" in smoke


def test_every_method_and_regularizer_has_a_recipe() -> None:
    names = {p.stem for p in RECIPES}
    assert set(replica.METHODS) <= names
    assert {f"cifar10_{reg}" for _, reg in replica.TRANSFER} <= names
    assert load(ROOT / "recipes/replica/urrl.toml").pretext.p == 0.5
    for reg, key in [("sim", "regularizer.weight"), ("l2sp", "regularizer.alpha")]:
        assert len(load(ROOT / f"recipes/replica/cifar10_{reg}.toml").finetune.sweep[key]) >= 2


def test_dry_run_plan_lists_all_methods_and_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steps = replica.run_replica(tmp_path, [0, 1, 2], dry_run=True, report=tmp_path / "r.md")
    keys = [s.key for s in steps]
    assert keys[0] == "linear/untrained/s0"
    for seed in (0, 1, 2):
        for m in replica.METHODS:
            assert f"pretrain/{m}/s{seed}" in keys and f"linear/{m}/s{seed}" in keys
        for m, reg in replica.TRANSFER:
            assert f"finetune/{m}/{reg}/s{seed}" in keys
    assert len(steps) == 1 + 3 * (2 * len(replica.METHODS) + len(replica.TRANSFER))
    # Every pretraining run comes before the transfer runs that need it.
    assert max(i for i, k in enumerate(keys) if k.startswith("pretrain")) < keys.index("finetune/moco_v2/none/s0")
    printed = capsys.readouterr().out
    assert "urrl pretrain recipes/replica/augmix_moco.toml" in printed and "run.seed=2" in printed
    assert "finetune.<the first seed's choice>" in printed
    assert not (tmp_path / "r.md").exists() and not (tmp_path / "runs").exists()


def test_later_seeds_reuse_the_first_seeds_sweep(tmp_path: Path) -> None:
    steps = {s.key: s for s in replica.plan(tmp_path, [0, 1])}
    first, later = steps["finetune/urrl/sim/s0"], steps["finetune/urrl/sim/s1"]
    assert first.late is None and steps["finetune/urrl/none/s1"].late is None
    with pytest.raises(UrrlError, match=r"sweep\.json"):
        later.command()
    sweep = replica.finetune_dir(tmp_path, "urrl", 0, "sim") / "sweep.json"
    sweep.parent.mkdir(parents=True)
    sweep.write_text(json.dumps([{"settings": {"regularizer.weight": 0.001}, "val_top1": 30},
                                 {"settings": {"regularizer.weight": 0.003}, "val_top1": 41}]))
    cmd = later.command()
    assert cmd[-4:] == ["--set", "finetune.sweep={}", "--set", "finetune.regularizer.weight=0.003"]
    r = load(cmd[2], [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"])
    assert r.finetune.sweep == {} and r.finetune.regularizer.weight == 0.003 and r.run.seed == 1


def test_budgets_load_and_unknown_budget_is_one_line(tmp_path: Path) -> None:
    for budget in replica.BUDGETS:
        for step in replica.plan(tmp_path, [0], budget):
            if step.args[0] == "urrl":
                load(step.args[2], [step.args[i + 1] for i, a in enumerate(step.args) if a == "--set"])
    with pytest.raises(UrrlError, match="--budget 'tpu'"):
        replica.plan(tmp_path, [0], "tpu")


def test_planned_overrides_load(tmp_path: Path) -> None:
    step = replica.plan(tmp_path, [1])[1]
    sets = [step.args[i + 1] for i, a in enumerate(step.args) if a == "--set"]
    r = load(step.args[2], sets)
    assert r.run.seed == 1 and r.run_dir == replica.pretrain_dir(tmp_path, "moco_v2", 1)


def _write(path: Path, metrics: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps({"dataset": "x", "metrics": metrics}))


def _fake(out: Path) -> None:
    # Linear: URRL top-1 10/12/14 (mean 12, sd 2) vs MoCo v2 5/6/7 (mean 6, sd 1) → clearly higher.
    top1 = {"moco_v2": [5, 6, 7], "urrl": [10, 12, 14], "augmix": [6, 6, 6], "augmix_allop": [7, 8, 9],
            "augmix_moco": [1, 2, 3]}
    for m, vals in top1.items():
        for s, v in enumerate(vals):
            _write(replica.pretrain_dir(out, m, s) / "linear" / "eval",
                   {"clean": {"top1": v}, "calibration": {"rms": 20 - v},
                    "corruptions": {"error": 90 - v if m != "urrl" else 95, "rms_calibration": 10}})
    for m, reg in replica.TRANSFER:
        for s in range(3):
            robust = {"none": 10, "l2sp": 11, "sim": 20, "adversarial": 30}[reg] + s
            _write(replica.finetune_dir(out, m, s, reg) / "eval",
                   {"clean": {"top1": 50 - (5 if reg == "sim" else 0)}, "calibration": {"rms": 5},
                    "adversarial": {"robust_top1": robust, "clean_top1": 50},
                    "corruptions": {"error": 60, "rms_calibration": 8 if reg == "sim" else 9 + s}})
    sweep = [{"settings": {"regularizer.weight": 0.001}, "val_top1": 30},
             {"settings": {"regularizer.weight": 0.01}, "val_top1": 40}]
    (replica.finetune_dir(out, "urrl", 0, "sim") / "sweep.json").write_text(json.dumps(sweep))


def test_report_from_synthetic_results(tmp_path: Path) -> None:
    _fake(tmp_path / "out")
    data = replica.collect(tmp_path / "out", [0, 1, 2])
    assert data["sweeps"]["urrl/sim"][0] == {"regularizer.weight": 0.01}
    mu, sd, n = replica.stat(data["linear"]["urrl"], "top1")
    assert (mu, sd, n) == (12.0, 2.0, 3)
    assert replica.mean_std([1.0, 2.0, 4.0])[1] == pytest.approx(math.sqrt(7 / 3))
    assert replica.mean_std([3.0]) == (3.0, None)
    t = replica.tables(data)
    t1 = {r[0]: r for r in t["table1"][1]}
    assert t1["URRL"][1:5] == ["3", "12.00 ± 2.00", "95.00 ± 0.00", "8.00 ± 2.00"]
    assert t1["URRL"][5] == "68.47" and t1["MoCo v2"][6] == "88.21"
    t2 = {r[0]: r for r in t["table2"][1]}
    assert t2["URRL-SR"][2:6] == ["21.00 ± 1.00", "45.00 ± 0.00", "36.72", "78.38"]
    assert t2["URRL + adversarial training"][4] == "46.25" and "MoCo v2-L2SP" not in t2
    t3 = {r[0]: r for r in t["table3"][1]}
    assert t3["MoCo v2-SR"][2] == "8.00 ± 0.00" and t3["MoCo v2-SR"][4] == "9.92"
    verdicts = {c.text: c.verdict() for c in replica.claims(data)}
    assert verdicts["URRL top-1 > MoCo v2 top-1"] == "reproduces"
    assert verdicts["URRL corruption error < MoCo v2"].startswith("does not reproduce")  # 95 vs 84 ± 1
    assert verdicts["URRL top-1 > AugMix (AllOp) top-1"] == "reproduces"
    assert verdicts["URRL-SR robust > URRL robust"] == "reproduces"
    assert verdicts["URRL robust > MoCo v2 robust (no regularizer)"] == "no difference"  # equal means
    text = replica.write_report(data, tmp_path / "docs" / "replica.md", meta={"budget": "cpu", "seeds": [0, 1, 2]})
    for heading in ("Table 1 analogue", "Table 2 analogue", "Table 3 analogue", "Which of the paper's claims"):
        assert heading in text
    assert (tmp_path / "docs" / "replica_table1.png").is_file()
    assert (tmp_path / "docs" / "replica_tables23.png").is_file()


def test_single_seed_claims_have_no_error_bar() -> None:
    c = replica.Claim("1", "a > b", (2.0, None, 1), (1.0, None, 1), True)
    assert c.verdict() == "same direction (1 seed, no error bar)"
    assert replica.Claim("1", "a > b", None, (1.0, None, 1), True).verdict() == "not run"
    noisy = replica.Claim("1", "a > b", (1.0, 1.0, 3), (1.5, 1.0, 3), True)
    assert noisy.verdict() == "does not reproduce (opposite, within noise)"


SHARED = ROOT.parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "tiny-imagenet-200" / "wnids.txt").is_file()
                    or not (SHARED / "cifar10" / "train.npz").is_file(), reason="../shared/data absent")
def test_smoke_budget_runs_every_step_end_to_end(tmp_path: Path) -> None:
    """`urrl replica --budget smoke` for 2 seeds: every real step (≈ 5 min on 2 cores), then the report."""
    out = tmp_path / "out"
    steps = replica.run_replica(out, [0, 1], budget="smoke")
    assert all(s.done.is_file() for s in steps)
    data = replica.collect(out, [0, 1])
    assert len(data["linear"]["urrl"]) == 2 and len(data["transfer"]["urrl/sim"]) == 2
    assert set(data["sweeps"]["urrl/sim"]) == {0}  # later seeds reuse seed 0's λ instead of sweeping
    chosen = data["sweeps"]["urrl/sim"][0]["regularizer.weight"]
    used = load(replica.finetune_dir(out, "urrl", 1, "sim") / "recipe.toml").finetune.regularizer.weight
    assert used == chosen
    text = (out / "replica.md").read_text()
    assert "Budget: `smoke`" in text and "| URRL-SR | 2 |" in text
