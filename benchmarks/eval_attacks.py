"""Cost of the two robustness suites on the CPU: L2-PGD (`adversarial`, 20 steps) vs AutoAttack (`autoattack`,
standard version: APGD-CE, APGD-T, FAB-T, Square) at ε = 0.5 on the same images and model.

    OMP_NUM_THREADS=1 python benchmarks/eval_attacks.py [--n 32] [--threads 1]

A narrow CIFAR-stem ResNet-10 (width 8) is trained briefly on CIFAR-10 training images (the shared copy, else
the bundled 1,000-image sample). AutoAttack only attacks the images that are still classified right, so its cost
depends on the model: it is measured twice, on the true labels (a weak model: few images to attack) and on the
model's own predictions as labels (every image starts correct: the cost of the whole ensemble per image).
Writes benchmarks/results/eval_attacks.json: seconds per image for each attack, robust and clean top-1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from urrlkit.evaluate.attacks import robust_accuracy
from urrlkit.evaluate.autoattack import autoattack_accuracy
from urrlkit.models import Classifier, build_encoder

ROOT = Path(__file__).resolve().parents[1]


def cifar(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    for p in (ROOT.parent / "shared" / "data" / "cifar10", Path("/work/shared/data/cifar10")):
        if (p / f"{split}.npz").is_file():
            with np.load(p / f"{split}.npz") as d:
                idx = np.random.default_rng(0).permutation(len(d["labels"]))[:n]
                x = torch.from_numpy(d["images"][idx]).permute(0, 3, 1, 2).contiguous()
                return x, torch.from_numpy(d["labels"][idx]).long(), str(p)
    from urrlkit.data import build

    ds = build("cifar10-sample", split=split)
    x = torch.stack([ds[i][0] for i in range(min(n, len(ds)))])
    y = torch.tensor([int(ds[i][1]) for i in range(min(n, len(ds)))])
    return x, y, "cifar10-sample"


def train(model: Classifier, n: int, epochs: int) -> float:
    x, y, _ = cifar("train", n)
    x = x.float() / 255
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 128):
            b = perm[i : i + 128]
            loss = F.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32, help="test images attacked")
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Classifier(build_encoder("resnet10", small_stem=True, width=8), 10)
    train_s = train(model, args.train, args.epochs)
    x, y, source = cifar("test", args.n)
    with torch.no_grad():
        own = model(x.float() / 255).argmax(1)
    runs = {}
    for name, labels in (("true_labels", y), ("own_predictions", own)):
        pgd = robust_accuracy(model, x, labels, eps=0.5, steps=20, batch_size=args.n, seed=0, device="cpu")
        aa = autoattack_accuracy(model, x, labels, eps=0.5, norm="L2", version="standard", batch_size=args.n,
                                 seed=0, device="cpu")
        runs[name] = {
            "pgd": {"seconds_per_image": pgd["seconds"] / args.n, "robust_top1": pgd["robust_top1"],
                    "clean_top1": pgd["clean_top1"]},
            "autoattack": {"seconds_per_image": aa["seconds"] / args.n, "robust_top1": aa["robust_top1"],
                           "clean_top1": aa["clean_top1"]},
            "ratio_autoattack_over_pgd": aa["seconds"] / pgd["seconds"],
        }
    out = {
        "what": "seconds per image, L2-PGD (20 steps, use_best) vs AutoAttack standard, eps 0.5, same images",
        "model": "resnet10, 3x3 stem, width 8, trained briefly", "train_images": args.train,
        "epochs": args.epochs, "train_seconds": round(train_s, 1), "images": args.n, "data": source, **runs,
        "machine": {"platform": platform.platform(), "cpu_cores": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "load_avg_1min": os.getloadavg()[0]},
    }
    path = ROOT / "benchmarks" / "results" / "eval_attacks.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
