"""Running the replica: each planned step as a subprocess (resumable, timed), then the report; and the
`linear-eval` step (`python -m urrlkit.experiments.replica linear-eval …`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from urrlkit.config import load
from urrlkit.experiments.replica.plan import ROOT, Step, _shell, plan
from urrlkit.experiments.replica.render import machine_meta, write_report
from urrlkit.experiments.replica.results import collect


def _run_step(step: Step, timings: dict[str, float]) -> None:
    resume = bool(step.resume_marker and step.resume_marker.exists())
    cmd = step.command(resume)
    print(f"$ {_shell(cmd)}", flush=True)
    # Shown as `urrl …` / `python …` (the report's commands); run with this interpreter.
    argv = ([sys.executable, "-m", "urrlkit.cli", *cmd[1:]] if cmd[0] == "urrl" else
            [sys.executable, *cmd[1:]] if cmd[0] == "python" else cmd)
    t0 = time.time()
    subprocess.run(argv, check=True, cwd=ROOT)
    timings[step.key] = round(time.time() - t0, 1)


def run_replica(out: Path, seeds: list[int], budget: str = "cpu", dry_run: bool = False,
                report: Path | None = None) -> list[Step]:
    """Run (or, with dry_run, print) every step of the replica, then write the report."""
    out = Path(out)
    steps = plan(out, seeds, budget)
    report = Path(report) if report else (out / "replica.md" if budget == "smoke" else ROOT / "docs" / "replica.md")
    if dry_run:
        for s in steps:
            state = "done" if s.done.exists() else "todo"
            print(f"[{state}] {s.key}: {s.shown()}")
        print(f"{len(steps)} steps; report → {report}")
        return steps
    out.mkdir(parents=True, exist_ok=True)
    tfile = out / "timings.json"
    timings: dict[str, float] = json.loads(tfile.read_text()) if tfile.exists() else {}
    for s in steps:
        if s.done.exists():
            print(f"[done] {s.key}", flush=True)
            continue
        _run_step(s, timings)
        tfile.write_text(json.dumps(timings, indent=2))
    data = collect(out, seeds)
    write_report(data, report, meta=machine_meta(steps, seeds, budget, timings))
    return steps


# ------------------------------------------------------------------------------------------- linear eval step


def linear_eval_main(argv: list[str]) -> None:
    """`python -m urrlkit.experiments.replica linear-eval RECIPE RUN_DIR [--untrained] [--labels N] [--set K=V ...]`:
    linear evaluation of a pretrained encoder on all labelled training images (the pretraining train_limit does not
    apply to the labels; --labels N keeps a fixed subset of N).
    --untrained evaluates the recipe's backbone at its random initialisation (seeded by run.seed): the floor that
    tells how much pretraining added."""
    import torch

    from urrlkit.finetune.linear import run_linear_eval
    from urrlkit.hub import load_backbone
    from urrlkit.models import encoder_from_settings

    recipe_path, run_dir, rest = argv[0], Path(argv[1]), argv[2:]
    sets = [rest[i + 1] for i in range(len(rest) - 1) if rest[i] == "--set"]
    recipe = load(recipe_path, sets)
    recipe.data.train_limit = int(rest[rest.index("--labels") + 1]) if "--labels" in rest else None
    if "--untrained" in rest:
        torch.manual_seed(recipe.run.seed)
        encoder = encoder_from_settings(recipe.model)
    else:
        encoder = load_backbone(str(run_dir))
    run_linear_eval(recipe, encoder, out_dir=run_dir / "linear")
