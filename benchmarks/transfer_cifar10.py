"""CPU-scale pretrain → linear eval → fine-tune on CIFAR-10 (../shared/data/cifar10), through the `urrl` CLI.

Pretrains MoCo v2 and URRL (p = 0.5) with recipes/cpu/cifar10_*.toml, then fine-tunes each encoder with
none / l2sp / sim (λ chosen on a validation split by --sweep) / adversarial, and evaluates clean accuracy,
L2-PGD robust accuracy (ε = 0.5, 20 steps) and RMS calibration error on a generated CIFAR-10-C.

    python benchmarks/transfer_cifar10.py [--epochs 4] [--pretrain-train 10000] [--ft-epochs 3] [--ft-train 2000]
writes benchmarks/results/transfer_cifar10.json and prints a Markdown table. Takes about an hour on 2 idle cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "cpu"


def urrl(*args: str) -> None:
    cmd = [sys.executable, "-m", "urrlkit.cli", *args]
    print("$ urrl " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--epochs", type=int, default=4, help="pretraining epochs")
    ap.add_argument("--pretrain-train", type=int, default=10000, help="pretraining images (unlabelled)")
    ap.add_argument("--ft-epochs", type=int, default=3)
    ap.add_argument("--ft-train", type=int, default=2000, help="fine-tuning training images")
    ap.add_argument("--eval-limit", type=int, default=100, help="images per corruption/severity and for PGD")
    ap.add_argument("--methods", default="moco_v2,urrl")
    ap.add_argument("--regs", default="none,l2sp,sim,adversarial")
    args = ap.parse_args()
    t0 = time.time()
    rows = []
    ev = [f"eval.corruptions.limit={args.eval_limit}", f"eval.adversarial.limit={args.eval_limit}"]
    ft = [*ev, f"data.train_limit={args.ft_train}", f"finetune.epochs={args.ft_epochs}", "finetune.lr=0.05",
          "finetune.batch_size=128", "finetune.schedule='cosine'", "finetune.weight_decay=5e-4",
          "finetune.val_fraction=0.1"]
    for method in args.methods.split(","):
        recipe = f"recipes/cpu/cifar10_{method}.toml"
        run = OUT / f"cpu-cifar10-{method}"
        if not (run / "model" / "model.safetensors").exists():
            sets = [f"optim.epochs={args.epochs}", f"data.train_limit={args.pretrain_train}", "optim.log_every=50", *ev]
            urrl("pretrain", recipe, *[a for s in sets for a in ("--set", s)])
        lin = read(run / "linear" / "linear_eval.json")
        lin_eval = read(run / "linear" / "eval" / "results.json").get("metrics", {})
        rows.append({"method": method, "stage": "linear", **lin, "eval": lin_eval})
        for reg in args.regs.split(","):
            extra: list[str] = []
            if reg == "sim":
                # per entry at batch 128 (scale = "batch"): the unscaled 0.001, 0.01 of the recorded run
                extra = ["--sweep", "regularizer.weight=0.128,1.28"]
            elif reg == "l2sp":
                extra = ["--set", "finetune.regularizer={type='l2sp', alpha=0.01, beta=0.01}"]
            elif reg == "adversarial":
                extra = ["--set", "finetune.regularizer={type='adversarial', eps=0.5, steps=3}"]
            out = run / f"finetune-{reg}"
            if not (out / "finetune.json").exists():
                sets = [a for s in ft for a in ("--set", s)]
                urrl("finetune", recipe, "--from", str(run), "--reg", reg, *sets, *extra)
            rows.append({"method": method, "stage": f"finetune-{reg}", **read(out / "finetune.json"),
                         "sweep": read(out / "sweep.json") or None,
                         "eval": read(out / "eval" / "results.json").get("metrics", {})})
    result = {"pretrain_epochs": args.epochs, "pretrain_train": args.pretrain_train,
              "finetune_epochs": args.ft_epochs, "finetune_train": args.ft_train, "eval_limit": args.eval_limit,
              "machine": f"{platform.machine()}, 2 CPU cores", "minutes": round((time.time() - t0) / 60, 1),
              "note": "CIFAR-10 test images are a JPEG-decoded copy (≈5.8/255 mean pixel difference)",
              "rows": rows}
    path = ROOT / "benchmarks" / "results" / "transfer_cifar10.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("| encoder | stage | clean top-1 | robust top-1 (L2 ε=0.5) | CIFAR-10-C error | RMS calib (clean) "
          "| RMS calib (-C) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        m = r["eval"]

        def g(section: str, key: str, m: dict = m) -> str:
            v = m.get(section, {}).get(key)
            return f"{v:.2f}" if isinstance(v, int | float) else "–"

        print(f"| {r['method']} | {r['stage']} | {g('clean', 'top1')} | {g('adversarial', 'robust_top1')} | "
              f"{g('corruptions', 'error')} | {g('calibration', 'rms')} | {g('corruptions', 'rms_calibration')} |")


if __name__ == "__main__":
    main()
