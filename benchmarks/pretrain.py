"""Pretraining throughput: urrlkit's engine versus a bare PyTorch MoCo v2 loop written here, in one run.

Same model (CIFAR-stem ResNet-18), batch, augmentation (the URRL sampler, p = 0.5), data and device. The engine's
number includes everything it does per step (Accelerate, logging, family counts, the per-epoch checkpoint);
the first epoch of each side is warm-up and not timed.

    python benchmarks/pretrain.py [--width 32] [--batch 128] [--epochs 4] [--images 1000]
writes benchmarks/results/pretrain.json. --images N > 1000 tiles the bundled sample into an N-image npz data set
(on a GPU the 1,000-image sample makes epochs of a few steps, so per-epoch work would dominate the timing).

    python benchmarks/pretrain.py --jpeg DIR [--quick] [--batch 256] [--workers N] [--out ...]
is the paper-scale input-path benchmark: ResNet-50 (ImageNet stem), 224 px, URRL p = 0.5, bf16 on CUDA, from the
JPEG tree DIR (benchmarks/jpeg_tree.py; `imagenet` layout). Three sides, same model, batch and files: urrlkit's
engine end to end (data.decode = auto: on CUDA the JPEGs are decoded and cut on the device, engine/prefetch.py
overlaps it with the step); the bare MoCo v2 loop fed by urrlkit's input path (the same loader and prefetcher);
the bare loop fed by the official pipeline (torchvision ImageFolder + PIL MoCo v2 / AugMix transforms per view,
a DataLoader with `--workers` processes, pinned memory). The bare sides also report their input wait: the time
the loop spends blocked on the next batch, over the step time (each step is synchronised to measure it).
--quick: a tiny CPU run (ResNet-10, width 4, 64 px) that exercises every piece.
Both sides are timed from the end of the first epoch to the end of the last; the engine logs only at epoch
ends here, as a real run with a large log_every would.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
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
from urrlkit.config import load
from urrlkit.data import DataRequest, build, from_config
from urrlkit.engine.allocator import tune_glibc_malloc
from urrlkit.models import build_encoder
from urrlkit.pretext.workflow import pretrain

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

    def __init__(self, width: int | None, dim: int, k: int, m: float, t: float, backbone: str = "resnet18",
                 small_stem: bool = True) -> None:
        super().__init__()
        self.q = build_encoder(backbone, small_stem=small_stem, width=width)
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


def fmt() -> torch.memory_format:
    """channels_last on CUDA (bf16 convolutions on tensor cores want it). Not on the CPU: there, with torch 2.14.1,
    a tiny ResNet-10 (width 4) in channels_last aborted in backward with glibc heap corruption."""
    return torch.channels_last if device().type == "cuda" else torch.contiguous_format


def jpeg_recipe(out: Path, args: argparse.Namespace):
    quick = args.quick
    return load(ROOT / "recipes" / "quickstart.toml", [
        f"run.output_dir='{out}'", "run.name='bench'", "run.trackers=[]", "data.dataset='imagenet'",
        f"data.root='{args.jpeg}'", f"data.image_size={64 if quick else 224}", f"data.batch_size={args.batch}",
        f"data.workers={args.workers}", "data.crop_from='original'", "data.augment_in='device'",
        f"data.decode='{'device' if quick else args.decode}'",
        f"model.backbone='{'resnet10' if quick else 'resnet50'}'", f"model.small_stem={str(quick).lower()}",
        f"model.width={4 if quick else 64}", f"pretext.head_dim={16 if quick else 128}",
        f"pretext.queue_size={args.batch * 4 if quick else 65536}", f"pretext.momentum={0.99 if quick else 0.999}",
        "pretext.bn_groups=1", f"optim.epochs={args.epochs}", "optim.log_every=1000000000", "eval.suites=[]",
        f"optim.mixed_precision='{'no' if device().type == 'cpu' else 'bf16'}'",
    ])


def bare_jpeg_pairs_per_s(r, loader, prepare, timed_steps: int) -> tuple[float, float]:
    """The bare MoCo v2 loop over `loader` (batches → (xq, xk) by `prepare`): pairs/s and the input wait
    fraction, both over `timed_steps` steps after one warm-up epoch; every step is synchronised."""
    dev = device()
    m = r.model
    model = BareMoCo(m.width, r.pretext.head_dim, r.pretext.queue_size, r.pretext.momentum, r.pretext.temperature,
                     backbone=m.backbone, small_stem=m.small_stem).to(dev, memory_format=fmt())
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=r.optim.lr, momentum=0.9,
                          weight_decay=r.optim.weight_decay)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=r.optim.mixed_precision == "bf16")
    # The default stream only: a device-wide synchronize would also wait for the next batch's preparation on the
    # prefetcher's side stream and so remove the overlap being measured.
    sync = (lambda: torch.cuda.current_stream().synchronize()) if dev.type == "cuda" else (lambda: None)
    done, wait, t0, steps_per_epoch = 0, 0.0, 0.0, len(loader)
    while done < steps_per_epoch + timed_steps:
        it = iter(prepare(loader))
        while done < steps_per_epoch + timed_steps:
            w = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            xq, xk = batch
            sync()
            if done >= steps_per_epoch:
                wait += time.perf_counter() - w
            with amp:
                loss = model(xq, xk)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync()
            done += 1
            if done == steps_per_epoch:
                t0 = time.perf_counter()
    total = time.perf_counter() - t0
    return timed_steps * r.data.batch_size / total, wait / total


def official_loader(r, args: argparse.Namespace) -> DataLoader:
    """torchvision's ImageFolder and PIL transforms, as main_moco.py feeds MoCo v2 (TwoCropsTransform), with each
    view's family drawn per view (Eq. 2) between MoCo v2's aug_plus and AugMix (all ops), as the CPU path does."""
    import random

    import torchvision
    from augment import augmix_transform, moco_v2_transform

    size = r.data.image_size
    moco, augmix = moco_v2_transform(size), augmix_transform(size)

    def two_views(img):
        return [(augmix if random.random() < r.pretext.p else moco)(img) for _ in range(2)]

    ds = torchvision.datasets.ImageFolder(str(Path(args.jpeg) / "train"), transform=two_views)
    return DataLoader(ds, batch_size=r.data.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                      pin_memory=device().type == "cuda", persistent_workers=args.workers > 0)


def urrlkit_loader(r) -> tuple[DataLoader, object]:
    """urrlkit's input path as `urrl pretrain` builds it (view_source), with its per-batch preparation."""
    from urrlkit.engine.prefetch import Prefetcher
    from urrlkit.pretext.workflow import recipe_sampler, view_source

    dev = device()
    source = view_source(r, from_config(r.data, "train"), recipe_sampler(r), False, dev.type)
    loader = DataLoader(source.dataset, batch_size=r.data.batch_size, shuffle=True, drop_last=True,
                        num_workers=r.data.workers, persistent_workers=r.data.workers > 0,
                        collate_fn=source.collate_fn)
    if source.prepare is None:
        raise SystemExit("the urrlkit side expects data.decode to resolve to 'device' here")
    decode = source.prepare

    def prepare(batch):
        views, _, _ = decode(batch)
        return [v.contiguous(memory_format=fmt()) for v in views]

    return loader, lambda ld: Prefetcher(ld, prepare, dev)


def jpeg_main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        r = jpeg_recipe(Path(tmp), args)
        pretrain(r)
        rows = [json.loads(x) for x in (Path(tmp) / "bench" / "metrics.jsonl").read_text().splitlines()]
        start_row = rows[0]
        steps = [x for x in rows if x.get("stage") == "pretrain" and "loss" in x]
        first, end = [x for x in steps if x["epoch"] == 0][-1], steps[-1]
        n = end["step"] - first["step"]
        engine = n * args.batch / (end["time"] - first["time"])
    dev = device()
    ours_loader, ours_prepare = urrlkit_loader(r)
    ours, ours_wait = bare_jpeg_pairs_per_s(r, ours_loader, ours_prepare, n)

    def official_prepare(ld):
        return (((a.to(dev, non_blocking=True).contiguous(memory_format=fmt()),
                  b.to(dev, non_blocking=True).contiguous(memory_format=fmt())) for (a, b), _ in ld))

    theirs, their_wait = bare_jpeg_pairs_per_s(r, official_loader(r, args), official_prepare, n)
    result = {
        "model": f"{r.model.backbone} ({'CIFAR' if r.model.small_stem else 'ImageNet'} stem), MoCo v2 head "
                 f"{r.pretext.head_dim}, queue {r.pretext.queue_size}, URRL p={r.pretext.p}, "
                 f"{r.data.image_size} px, {r.optim.mixed_precision}",
        "data": f"{args.jpeg} (JPEG, ImageFolder layout)", "batch": args.batch, "workers": args.workers,
        "timed_steps": n, "decode": start_row.get("decode"), "mode": "quick" if args.quick else "full",
        "urrlkit_engine_pairs_per_s": round(engine, 2),
        "bare_loop_urrlkit_input_pairs_per_s": round(ours, 2),
        "bare_loop_urrlkit_input_wait_fraction": round(ours_wait, 4),
        "bare_loop_official_input_pairs_per_s": round(theirs, 2),
        "bare_loop_official_input_wait_fraction": round(their_wait, 4),
        "engine_over_official": round(engine / theirs, 3),
        "device": (torch.cuda.get_device_name() if dev.type == "cuda" else
                   f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--no-malloc-tuning", action="store_true", help="keep glibc's malloc defaults")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/pretrain.json "
                    "(pretrain_jpeg.json with --jpeg)")
    ap.add_argument("--jpeg", type=Path, default=None, help="JPEG tree: the paper-scale input-path benchmark")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="--jpeg: loader workers")
    ap.add_argument("--decode", default="auto", choices=["auto", "cpu", "device"], help="--jpeg: data.decode")
    ap.add_argument("--quick", action="store_true", help="--jpeg: a tiny CPU-sized run of every piece")
    args = ap.parse_args()
    tuned = False if args.no_malloc_tuning else tune_glibc_malloc()  # as the `urrl` command does; both sides
    if args.jpeg is not None:
        args.out = args.out or ROOT / "benchmarks" / "results" / "pretrain_jpeg.json"
        jpeg_main(args)
        return
    args.out = args.out or ROOT / "benchmarks" / "results" / "pretrain.json"
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
