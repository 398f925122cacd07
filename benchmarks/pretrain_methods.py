"""Pretraining throughput per method: urrlkit's engine versus a bare PyTorch loop of the same method, in one run.

For each method, its sample recipe (recipes/methods/<method>_sample.toml; MoCo v2: recipes/quickstart.toml) on the
bundled CIFAR-10 sample with the online monitors off, so both sides do the same work. The bare side is the loop a
user would write around the same modules: the method's `PretextModel` (pretext/model.py, the same heads,
momentum copies and queues), the same views (ViewSource, Eq. 2 per view), the same optimizer, and nothing else —
no Accelerate, logging, NaN watch, family counts, lr schedule or checkpoints. The engine side is `pretrain` as
`urrl pretrain` runs it (a checkpoint every epoch included). The first epoch of each side is warm-up and not
timed; both sides then run the same number of steps.

The engine's monitors at their defaults (kNN over the test split each epoch, the online probe, the health
monitor) are timed separately: `--monitors` adds a third run per method with them on, reported as their time
per epoch over the training time per epoch.

    python benchmarks/pretrain_methods.py [--methods moco_v2 simclr ...] [--epochs 4] [--repeats 3] [--monitors]
writes benchmarks/results/pretrain_methods.json (with the commit it was measured at).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from urrlkit.config import load
from urrlkit.data import from_config
from urrlkit.data.base import dataset_len
from urrlkit.engine.allocator import tune_glibc_malloc
from urrlkit.engine.optim import build_optimizer
from urrlkit.engine.progress import Progress
from urrlkit.pretext.workflow import build_pretext, pretrain, recipe_sampler, view_source

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["moco_v2", "instdis", "pirl", "simclr", "byol", "moco_v3", "dino"]
OFF = ["monitor.knn=false", "monitor.linear=false", "monitor.health=false"]


def recipe_path(method: str) -> Path:
    if method == "moco_v2":
        return ROOT / "recipes" / "quickstart.toml"
    sample = ROOT / "recipes" / "methods" / f"{method}_sample.toml"
    return sample if sample.is_file() else ROOT / "recipes" / "quickstart.toml"


def recipe(method: str, out: Path, args: argparse.Namespace, monitors: bool):
    path = recipe_path(method)
    extra = [f"pretext.method='{method}'"] if path.name == "quickstart.toml" and method != "moco_v2" else []
    extra += ["pretext.jigsaw_grid=2"] if method == "pirl" else []
    extra += ["data.train_limit=128", "data.test_limit=64", "model.width=4"] if args.quick else []
    return load(path, [f"run.output_dir='{out}'", "run.name='bench'", "run.trackers=[]",
                       f"optim.epochs={args.epochs}", "optim.log_every=1000000000", "eval.suites=[]", *extra,
                       *([] if monitors else OFF)])


def engine_images_per_s(r) -> tuple[float, int, float]:
    """Images per second over the steps after the first epoch, the step count, and the wall time of those epochs
    (the monitors' work at each epoch end included)."""
    pretrain(r)
    rows = [json.loads(x) for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in rows if x.get("stage") == "pretrain" and "loss" in x]
    start, end = [x for x in steps if x["epoch"] == 0][-1], steps[-1]
    ends = [x for x in rows if x.get("stage") == "pretrain" and x.get("epoch") == r.optim.epochs - 1
            and "loss" not in x]  # the last epoch's monitor row, logged after its last step
    last = max([end["time"], *(x["time"] for x in ends)])
    n = end["step"] - start["step"]
    return n * r.data.batch_size / (end["time"] - start["time"]), n, last - start["time"]


def bare_images_per_s(r, timed_steps: int) -> float:
    """The same method's modules in a plain loop: views, forward, backward, step, the method's after_step."""
    torch.manual_seed(r.run.seed)
    train = from_config(r.data, "train")
    source = view_source(r, train, recipe_sampler(r), False)
    loader = DataLoader(source.dataset, batch_size=r.data.batch_size, shuffle=True, drop_last=True,
                        collate_fn=source.collate_fn)
    model = build_pretext(r, dataset_len(train))
    o = r.optim
    opt = build_optimizer(model, o.optimizer, o.effective_lr(r.data.batch_size), o.momentum, o.weight_decay,
                          **o.optimizer_kwargs())
    gen = torch.Generator().manual_seed(r.run.seed)
    per_epoch = len(loader)
    total = per_epoch * (1 + -(-timed_steps // per_epoch))
    done, t0 = 0, 0.0
    model.train()
    while done < per_epoch + timed_steps:
        for batch in loader:
            progress = Progress(done, total, done // per_epoch, total // per_epoch, done % per_epoch, per_epoch)
            views, _, index = source.views(batch, gen)
            loss = model(views, index, progress).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.after_step(progress)
            done += 1
            if done == per_epoch:
                t0 = time.perf_counter()
            if done == per_epoch + timed_steps:
                break
    return timed_steps * r.data.batch_size / (time.perf_counter() - t0)


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "urrlkit"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--monitors", action="store_true", help="also time the engine with its monitors on")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side, alternating; medians reported")
    ap.add_argument("--quick", action="store_true", help="128 images, width 4: a smoke run of every piece")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pretrain_methods.json")
    args = ap.parse_args()
    if args.epochs < 2:
        ap.error("--epochs: at least 2 (the first is warm-up)")
    tuned = tune_glibc_malloc()  # as the `urrl` command does; both sides
    rows = {}
    for method in args.methods:
        engine_runs, bare_runs, walls, row = [], [], [], {}
        for _ in range(args.repeats):  # the sides alternate, so a slow spell of the machine hits both
            with tempfile.TemporaryDirectory() as tmp:
                r = recipe(method, Path(tmp) / "off", args, monitors=False)
                engine, steps, engine_wall = engine_images_per_s(r)
                engine_runs.append(engine)
                walls.append(engine_wall)
                bare_runs.append(bare_images_per_s(r, steps))
                if args.monitors and not row:
                    _, _, wall = engine_images_per_s(recipe(method, Path(tmp) / "on", args, monitors=True))
                    # the timed window holds epochs 1..E-1 of training and the monitors of all E epoch ends
                    per_epoch_train = engine_wall / (args.epochs - 1)
                    row["monitor_s_per_epoch"] = round((wall - engine_wall) / args.epochs, 3)
                    row["monitors_over_training"] = round((wall - engine_wall) / args.epochs / per_epoch_train, 3)
        engine, bare = statistics.median(engine_runs), statistics.median(bare_runs)
        rows[method] = {"recipe": str(recipe_path(method).relative_to(ROOT)), "model": r.model.describe(),
                        "batch": r.data.batch_size, "timed_steps": steps, "urrlkit_images_per_s": round(engine, 2),
                        "bare_images_per_s": round(bare, 2), "ratio": round(engine / bare, 3),
                        "ratios": [round(a / b, 3) for a, b in zip(engine_runs, bare_runs, strict=True)], **row}
        print(method, json.dumps(rows[method]), flush=True)
    result = {
        "what": "images/s after a warm-up epoch, median of the repeats; urrlkit's engine (monitors off) vs a bare "
                "loop of the same method",
        "commit": commit(), "epochs": args.epochs, "repeats": args.repeats, "quick": args.quick, "methods": rows,
        "min_ratio": min(r["ratio"] for r in rows.values()),
        "device": (torch.cuda.get_device_name() if torch.cuda.is_available() else
                   f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        "torch": torch.__version__, "malloc_tuning": tuned,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
