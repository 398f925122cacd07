"""PGD-L2: urrlkit.attacks.pgd_l2 vs torchattacks.PGDL2 at equal settings (same model, same images).

Run in the benchmark env of benchmarks/corrupt.py (torchattacks installed there, never a urrlkit dependency):
    /tmp/bench-venv/bin/python benchmarks/attack.py

A narrow CIFAR-stem ResNet-18 (width 16) is trained briefly on 5,000 CIFAR-10 training images so that clean
accuracy is well above chance, then both attacks run ε = 0.5, 20 steps, step 2.5·ε/20, no random start, on the
same test images. torchattacks keeps the last iterate, so urrlkit runs with use_best=False for the matched
comparison; its default use_best=True is reported too. Writes benchmarks/results/attack.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from urrlkit.attacks import pgd_l2
from urrlkit.models import Classifier, build_encoder

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN, EPOCHS, N_ATTACK, EPS, STEPS = 5000, 3, 200, 0.5, 20


def data(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    for p in (ROOT.parent / "shared" / "data" / "cifar10", Path("/work/shared/data/cifar10")):
        if (p / f"{split}.npz").is_file():
            with np.load(p / f"{split}.npz") as d:
                idx = np.random.default_rng(0).permutation(len(d["labels"]))[:n]
                x = torch.from_numpy(d["images"][idx]).permute(0, 3, 1, 2).contiguous().float() / 255
                return x, torch.from_numpy(d["labels"][idx]).long()
    raise SystemExit("needs shared/data/cifar10")


def train(model: Classifier) -> float:
    x, y = data("train", N_TRAIN)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 128):
            b = perm[i : i + 128]
            xb = x[b]
            flip = torch.rand(len(b), generator=g) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return time.perf_counter() - t0


@torch.no_grad()
def acc(model: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return 100 * float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    import torchattacks

    torch.manual_seed(0)
    model = Classifier(build_encoder("resnet18", small_stem=True, width=16), 10)
    train_s = train(model)
    x, y = data("test", N_ATTACK)
    alpha = 2.5 * EPS / STEPS
    clean = acc(model, x, y)
    pgd_l2(model, x[:8], y[:8], EPS, 2, use_best=False)  # warm-up
    atk = torchattacks.PGDL2(model, eps=EPS, alpha=alpha, steps=STEPS, random_start=False)
    atk(x[:8], y[:8])

    t0 = time.perf_counter()
    ours = torch.cat(
        [
            pgd_l2(model, x[i : i + 100], y[i : i + 100], EPS, STEPS, alpha, use_best=False)
            for i in range(0, N_ATTACK, 100)
        ]
    )
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = torch.cat([atk(x[i : i + 100], y[i : i + 100]) for i in range(0, N_ATTACK, 100)])
    t_theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    best = torch.cat(
        [
            pgd_l2(model, x[i : i + 100], y[i : i + 100], EPS, STEPS, alpha, use_best=True)
            for i in range(0, N_ATTACK, 100)
        ]
    )
    t_best = time.perf_counter() - t0

    r_ours, r_theirs, r_best = acc(model, ours, y), acc(model, theirs, y), acc(model, best, y)
    max_norm = float(max((ours - x).flatten(1).norm(dim=1).max(), (best - x).flatten(1).norm(dim=1).max()))
    out = {
        "model": "resnet18 width 16, CIFAR stem, trained 3 epochs on 5,000 CIFAR-10 images",
        "train_seconds": round(train_s, 1),
        "n": N_ATTACK,
        "clean_top1": clean,
        "settings": {"eps": EPS, "steps": STEPS, "step_size": alpha, "random_start": False, "norm": "L2"},
        "urrlkit": {
            "robust_top1": r_ours,
            "seconds": round(t_ours, 2),
            "img_per_s": round(N_ATTACK / t_ours, 2),
            "use_best": False,
        },
        "torchattacks": {
            "robust_top1": r_theirs,
            "seconds": round(t_theirs, 2),
            "img_per_s": round(N_ATTACK / t_theirs, 2),
            "version": torchattacks.__version__,
        },
        "urrlkit_use_best": {"robust_top1": r_best, "seconds": round(t_best, 2)},
        "robust_top1_diff": round(abs(r_ours - r_theirs), 2),
        "time_ratio_torchattacks_over_urrlkit": round(t_theirs / t_ours, 3),
        "max_l2_norm": max_norm,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    print(json.dumps(out, indent=2))
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "attack.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
