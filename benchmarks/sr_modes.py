"""Similarity regularization's open choices (paper Eq. 4) measured on CIFAR-10 (../shared/data/cifar10): how f*'s
BatchNorm layers normalise (`frozen_bn`) and whether ‖S − S*‖ is scaled to a per-entry value (`scale`).

1. Pretrains a small encoder once: `urrl pretrain recipes/quickstart.toml` on 5,000 CIFAR-10 images, 4 epochs
   (ResNet-10 at width 16, 3×3 stem; URRL, p = 0.5), into runs/bench/sr-modes-encoder.
2. At the pretrained weights and after 20 plain fine-tuning steps, per batch size B ∈ {32, 64, 128} and
   frozen_bn ∈ {eval, match}: ‖S − S*‖_F / ‖S*‖_F, and the gradient norm of L_sim (λ = 1) over the encoder's
   parameters, alone and relative to the task loss's, for scale = none and batch (mean of 3 held-out batches, the
   tuned model in train mode as fine-tuning runs it).
3. Short fine-tunes through the fine-tuning stage (`train_classifier` with recipes/replica/cifar10_sim.toml's
   protocol: pad-crop/flip, SGD momentum 0.9, cosine, lr 0.05, weight decay 5e-4) on 4,000 training images for
   3 epochs, then top-1 on 2,000 test images and on the generated CIFAR-10-C at severity 3 (15 corruptions × 300
   of those images), and the eval-mode drift ‖S − S*‖_F / ‖S*‖_F on 512 test images: no regularizer (seeds 0, 1),
   frozen_bn eval vs match at λ = 0.03 (seeds 0, 1) and 0.3 (seed 0) with scale = batch and B = 64, and λ = 0.03
   with scale = batch vs the unscaled λ that equals it at B = 64 (0.03 / 64), at B = 32 and 128 (frozen_bn eval).

    python benchmarks/sr_modes.py [--skip-finetune] [--only I ...]
writes benchmarks/results/sr_modes.json. About 11 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "runs" / "bench" / "sr-modes-encoder"
DATA = "../shared/data/cifar10"


def pretrain() -> None:
    if (RUN / "model" / "model.safetensors").exists():
        return
    sets = ["data.dataset='cifar10'", f"data.root='{DATA}'", "data.train_limit=5000", "data.test_limit=1000",
            "optim.epochs=4", "linear_eval.enabled=false", "monitor.linear=false", "monitor.knn=false",
            "eval.suites=[]", "run.output_dir='runs/bench'", "run.name='sr-modes-encoder'", "run.trackers=[]"]
    cmd = [sys.executable, "-m", "urrlkit.cli", "pretrain", "recipes/quickstart.toml",
           *[a for s in sets for a in ("--set", s)]]
    subprocess.run(cmd, check=True, cwd=ROOT)


def grad_norm(loss: Any, params: list[Any]) -> float:
    import torch

    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def drifted(encoder: Any, images: Any, labels: Any, steps: int) -> Any:
    """The encoder after `steps` plain fine-tuning steps (task loss only, SGD lr 0.05, momentum 0.9, batch 64), so
    S − S* holds real drift."""
    import copy

    import torch

    from urrlkit.finetune.regularizers import task_loss
    from urrlkit.models import Classifier

    torch.manual_seed(0)
    model = Classifier(copy.deepcopy(encoder), 10).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for k in range(steps):
        i = (k * 64) % (images.shape[0] - 64)
        opt.zero_grad()
        task_loss(model(images[i:i + 64]), labels[i:i + 64]).backward()
        opt.step()
    return model


def ratios(encoder: Any, images: Any, labels: Any, steps: int) -> list[dict[str, Any]]:
    """Eq. 4 at the pretrained weights (steps = 0) or after `steps` plain steps: relative size of S − S*, its
    value and the gradient norm of λ·L_sim (λ = 1) over the encoder's parameters relative to the task loss's, per
    batch size, frozen_bn and scale (mean over 4 batches the steps did not see)."""
    import copy

    from urrlkit.finetune.regularizers import FrozenTarget, similarity_matrix, similarity_regularization, task_loss

    rows = []
    start = drifted(encoder, images, labels, steps)
    held = images[-448:], labels[-448:]
    for b in (32, 64, 128):
        for frozen_bn in ("eval", "match"):
            acc: dict[str, list[float]] = {}
            for k in range(3):
                model = copy.deepcopy(start).train()
                f_star = FrozenTarget(encoder, frozen_bn, model)
                x, y = held[0][k * b:(k + 1) * b], held[1][k * b:(k + 1) * b]
                logits, feats = model(x, return_features=True)
                target = f_star(x)
                params = [p for p in model.encoder.parameters() if p.requires_grad]
                task = task_loss(logits, y)
                g_task = grad_norm(task, params)
                s_star = similarity_matrix(target)
                vals = {"rel_diff": float((similarity_matrix(feats.detach()) - s_star).norm() / s_star.norm()),
                        "task_loss": float(task), "task_grad": g_task}
                for scale in ("none", "batch"):
                    reg = similarity_regularization(feats, target, "fro", False, scale)
                    vals[f"sim_{scale}"] = float(reg)
                    vals[f"grad_sim_{scale}"] = grad_norm(reg, params)
                    vals[f"grad_ratio_{scale}"] = vals[f"grad_sim_{scale}"] / g_task
                for key, v in vals.items():
                    acc.setdefault(key, []).append(v)
            rows.append({"steps": steps, "batch": b, "frozen_bn": frozen_bn,
                         **{k: round(sum(v) / len(v), 6) for k, v in acc.items()}})
            print(rows[-1], flush=True)
    return rows


def test_drift(tuned: Any, pretrained: Any, recipe: Any) -> float:
    """‖S − S*‖_F / ‖S*‖_F on 512 test images in batches of 128, both encoders in eval mode as they are tested:
    how far fine-tuning moved the similarities the representation is evaluated with."""
    import torch

    from urrlkit.data import from_config, to_tensors

    x, _ = to_tensors(from_config(recipe.data, "test"))
    x = x[:512].float() / 255
    tuned, pretrained = tuned.eval(), pretrained.eval()
    rel = []
    with torch.no_grad():
        for i in range(0, 512, 128):
            f, g = tuned(x[i:i + 128]), pretrained(x[i:i + 128])
            s_star = g @ g.T
            rel.append(float((f @ f.T - s_star).norm() / s_star.norm()))
    return sum(rel) / len(rel)


def finetune(setting: dict[str, Any], encoder: Any, out: Path) -> dict[str, Any]:
    import copy
    import shutil

    import torch

    from urrlkit.config import load
    from urrlkit.data import from_config
    from urrlkit.evaluate.suites import run_suites
    from urrlkit.finetune.train import train_classifier
    from urrlkit.models import Classifier

    b, reg, seed = setting["batch"], setting["reg"], setting.get("seed", 0)
    if reg is None:
        table = "{type='none'}"
    else:
        table = f"{{type='sim', weight={reg[0]:g}, frozen_bn='{reg[1]}', scale='{reg[2]}'}}"
    sets = [f"run.seed={seed}", f"data.root='{DATA}'", "data.train_limit=4000", "data.test_limit=2000",
            "finetune.epochs=3", f"finetune.batch_size={b}", "optim.log_every=5", "eval.corruptions.limit=300",
            "eval.corruptions.severities=[3]", f"finetune.regularizer={table}"]
    recipe = load(ROOT / "recipes" / "replica" / "cifar10_sim.toml", sets)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    train = from_config(recipe.data, "train")
    torch.manual_seed(seed)  # the head's initialisation, as finetune_once seeds it
    model = Classifier(copy.deepcopy(encoder), 10)
    t0 = time.time()
    model = train_classifier(recipe, model, train, recipe.finetune, out / "checkpoints", recipe.finetune.regularizer,
                             pretrained=encoder)
    seconds = time.time() - t0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    sims = [r["sim"] for r in logged if "sim" in r]
    per_entry = 1.0 if reg is None or reg[2] == "batch" else 1.0 / b  # the logged L_sim as the RMS of S − S*
    res = run_suites(model, recipe, ["clean", "corruptions"]).metrics
    drift = test_drift(model.encoder, encoder, recipe)
    row = {"batch": b, "seed": seed,
           "reg": None if reg is None else dict(zip(("weight", "frozen_bn", "scale"), reg, strict=True)),
           "train_seconds": round(seconds, 1), "clean_top1": res.clean.top1,
           "corrupted_top1": 100.0 - res.corruptions.error,
           "test_drift": drift, "sim_rms_last5": sum(sims[-5:]) * per_entry / 5 if sims else None, "sim_logged": sims}
    print({k: v for k, v in row.items() if k != "sim_logged"}, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--skip-finetune", action="store_true")
    ap.add_argument("--only", type=int, nargs="*", help="run only these fine-tune settings (indices)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    t0 = time.time()
    pretrain()
    import torch

    torch.set_num_threads(2)
    from urrlkit.data import load_split, to_tensors
    from urrlkit.hub import load_backbone

    encoder = load_backbone(str(RUN))
    x, y = to_tensors(load_split("cifar10", "train", 32, root=Path(DATA), limit=1728))
    result: dict[str, Any] = {"encoder": "URRL (p = 0.5) ResNet-10 width 16, 5,000 CIFAR-10 images, 4 epochs",
                              "initial": ratios(encoder, x.float() / 255, y, 0),
                              "after_20_steps": ratios(encoder, x.float() / 255, y, 20)}
    if not args.skip_finetune:
        # (λ, frozen_bn, scale); λ with scale = batch is B × the unscaled one at the same strength.
        settings: list[dict[str, Any]] = [{"batch": 64, "reg": None, "seed": s} for s in (0, 1)]
        for lam, seeds in ((0.03, (0, 1)), (0.3, (0,))):
            for frozen_bn in ("eval", "match"):
                settings += [{"batch": 64, "reg": (lam, frozen_bn, "batch"), "seed": s} for s in seeds]
        for b in (32, 128):
            settings.append({"batch": b, "reg": (0.03, "eval", "batch")})
            settings.append({"batch": b, "reg": (0.03 / 64, "eval", "none")})
        result["finetune"] = [finetune(s, encoder, ROOT / "runs" / "bench" / f"sr-{i}") for i, s in enumerate(settings)
                              if not args.only or i in args.only]
    result["machine"] = f"{platform.machine()}, 2 CPU cores"
    result["minutes"] = round((time.time() - t0) / 60, 1)
    path = ROOT / "benchmarks" / "results" / "sr_modes.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"→ {path} ({result['minutes']} min)")


if __name__ == "__main__":
    main()
