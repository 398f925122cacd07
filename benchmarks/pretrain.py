"""Pretraining throughput: urrlkit's engine versus a bare PyTorch MoCo v2 loop written here, in one run.

Same model (CIFAR-stem ResNet-18), batch, augmentation (the URRL sampler, p = 0.5), data and device. The engine's
number includes everything it does per step (Accelerate, logging, family counts, the per-epoch checkpoint);
the first epoch of each side is warm-up and not timed.

    python benchmarks/pretrain.py [--width 32] [--batch 128] [--epochs 4] [--images 1000]
writes benchmarks/results/pretrain.json. --images N > 1000 tiles the bundled sample into an N-image npz data set
(on a GPU the 1,000-image sample makes epochs of a few steps, so per-epoch work would dominate the timing).
Both sides are timed from the end of the first epoch to the end of the last; the engine logs only at epoch
ends here, as a real run with a large log_every would.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from urrlkit.augment import build_sampler
from urrlkit.data import DataRequest, build
from urrlkit.data.loading import from_config
from urrlkit.engine.allocator import tune_glibc_malloc
from urrlkit.engine.pretrain import pretrain
from urrlkit.models import build_encoder
from urrlkit.recipe import load

ROOT = Path(__file__).resolve().parents[1]


def recipe(out: Path, args: argparse.Namespace):
    data = ["data.dataset='npz'", f"data.root='{args.data_dir}'"] if args.data_dir else []
    return load(ROOT / "recipes" / "quickstart.toml", [
        f"run.output_dir='{out}'", "run.name='bench'", "run.trackers=[]", f"data.batch_size={args.batch}",
        "model.backbone='resnet18'", f"model.width={args.width}", f"pretext.queue_size={args.batch * 32}",
        "pretext.bn_groups=1", f"optim.epochs={args.epochs}", "optim.log_every=1000000000", "eval.suites=[]",
        *data,
    ])


def tiled_sample(n: int, folder: Path) -> Path:
    """The bundled CIFAR-10 sample repeated to n images, as an npz data set (train split only)."""
    ds = build("cifar10-sample", DataRequest(None, "train", 32))
    reps = -(-n // len(ds))
    images = ds.images.permute(0, 2, 3, 1).repeat(reps, 1, 1, 1)[:n].numpy()
    labels = ds.labels.repeat(reps)[:n].numpy()
    np.savez(folder / "train.npz", images=images, labels=labels, classes=np.array(ds.classes))
    return folder


def engine_pairs_per_s(args: argparse.Namespace) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        r = recipe(Path(tmp), args)
        pretrain(r)
        rows = [json.loads(x) for x in (Path(tmp) / "bench" / "metrics.jsonl").read_text().splitlines()]
        steps = [x for x in rows if x.get("stage") == "pretrain" and "loss" in x]
        first_epoch = [x for x in steps if x["epoch"] == 0]
        start, end = first_epoch[-1], steps[-1]  # timed: every step after the warm-up epoch
        n = end["step"] - start["step"]
        return n * args.batch / (end["time"] - start["time"]), n


class BareMoCo(torch.nn.Module):
    """MoCo v2 in plain PyTorch: the reference's builder.py logic, single process."""

    def __init__(self, width: int, dim: int, k: int, m: float, t: float) -> None:
        super().__init__()
        self.q = build_encoder("resnet18", small_stem=True, width=width)
        d = self.q.feature_dim
        self.hq = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.ReLU(), torch.nn.Linear(d, dim))
        self.k, self.hk = copy.deepcopy(self.q), copy.deepcopy(self.hq)
        for p in [*self.k.parameters(), *self.hk.parameters()]:
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(dim, k), dim=0))
        self.ptr, self.m, self.t, self.kk = 0, m, t, k

    def forward(self, xq: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        q = F.normalize(self.hq(self.q(xq)), dim=1)
        with torch.no_grad():
            for a, b in zip([*self.q.parameters(), *self.hq.parameters()],
                            [*self.k.parameters(), *self.hk.parameters()], strict=True):
                b.mul_(self.m).add_(a.detach(), alpha=1 - self.m)
            k = F.normalize(self.hk(self.k(xk)), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.clone().detach()], 1) / self.t
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        with torch.no_grad():
            self.queue[:, self.ptr:self.ptr + len(k)] = k.T
            self.ptr = (self.ptr + len(k)) % self.kk
        return loss


def bare_pairs_per_s(args: argparse.Namespace, timed_steps: int) -> float:
    r = recipe(Path("unused"), args)
    torch.manual_seed(0)
    ds = from_config(r.data, "train")
    loader = DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True)
    dev = device()
    model = BareMoCo(args.width, r.pretext.head_dim, r.pretext.queue_size, r.pretext.momentum,
                     r.pretext.temperature).to(dev)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=r.optim.lr, momentum=0.9,
                          weight_decay=r.optim.weight_decay)
    sampler = build_sampler(r.pretext.family_weights(), image_size=32, views=2)
    gen = torch.Generator(dev).manual_seed(0)
    done, t0 = -len(loader), 0.0  # first epoch = warm-up
    while done < timed_steps:
        for x, _ in loader:
            (xq, xk), _ = sampler(x.to(dev), gen)
            loss = model(xq, xk)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == 0:
                t0 = time.perf_counter()
            if done == timed_steps:
                break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return timed_steps * args.batch / (time.perf_counter() - t0)


def device() -> torch.device:
    """Where both sides run: the engine (Accelerate) takes the GPU when there is one, so the bare loop does too."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's malloc defaults")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pretrain.json")
    args = ap.parse_args()
    tuned = False if args.no_malloc_tuning else tune_glibc_malloc()  # as the `urrl` command does; both sides
    with tempfile.TemporaryDirectory() as tmp:
        args.data_dir = tiled_sample(args.images, Path(tmp)) if args.images > 1000 else None
        engine, steps = engine_pairs_per_s(args)
        bare = bare_pairs_per_s(args, steps)
    result = {
        "model": f"resnet18 (CIFAR stem, width {args.width}), MoCo v2 head, URRL sampler p=0.5, 32 px",
        "batch": args.batch, "images": args.images, "timed_steps": steps,
        "urrlkit_pairs_per_s": round(engine, 2), "bare_pairs_per_s": round(bare, 2),
        "ratio": round(engine / bare, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": (torch.cuda.get_device_name() if device().type == "cuda" else
                   f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        "torch": torch.__version__, "malloc_tuning": tuned,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
