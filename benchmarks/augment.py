"""Views per second: urrlkit's batched URRL sampler (paper Eq. 2, p = 0.5) against the per-image torchvision
pipelines of the official code (MoCo v2 ``TwoCropsTransform`` of PIL transforms; ``v2.AugMix(all_ops=True)``
on PIL images after crop + flip), fed the way the official code feeds them: a DataLoader with one worker per
core. Both run on the same cores in one process tree, at 32, 64 and 224 px (224 from 256-px storage).

    python benchmarks/augment.py          # full run (0.5–4 min) → benchmarks/results/augment.json
    python benchmarks/augment.py --quick    # smoke run, writes nothing unless --out is given
    python benchmarks/augment.py --device cuda --baselines --jpeg DIR   # + torchvision v2 / torchaug on the
        # device, and the JPEG → views path (urrlkit device decoding vs DALI) from DIR (benchmarks/jpeg_tree.py)
"""

from __future__ import annotations

import argparse
import json
import os

# On a shared, oversubscribed machine libgomp's default spin-waiting makes 2 intra-op threads far slower than
# 1 (threads spin at barriers while their core runs another process). Passive waiting is a process setting
# the caller chooses (urrlkit does not touch it); it must be set before torch loads OpenMP. Recorded below.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import platform
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import gpu_baselines
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from PIL import Image, ImageFilter, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from urrlkit.augment import build_sampler
from urrlkit.augment.fractals import fractal_images
from urrlkit.augment.pixmix import mixing_size
from urrlkit.augment.workers import AugmentingCollate
from urrlkit.config import FamilySpec
from urrlkit.config.pretext import method_settings
from urrlkit.data import DataRequest, build
from urrlkit.engine.allocator import tune_glibc_malloc

RESULTS = Path(__file__).parent / "results" / "augment.json"


# --------------------------------------------------------------------------- torchvision baseline (official)


def urrl_families() -> list:
    """URRL's weighted families (paper Eq. 2, p = 0.5) as the default method expands them."""
    return method_settings({"method": "moco_v2", "p": 0.5}).family_weights()


class GaussianBlur:
    """moco/loader.py GaussianBlur: PIL blur with σ ~ U(0.1, 2)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.sigma = sigma

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def moco_v2_transform(size: int) -> T.Compose:
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.2, 1.0)),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([GaussianBlur()], p=0.5),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
    ])


def augmix_transform(size: int) -> T.Compose:
    crop = T.RandomCrop(size, padding=4) if size <= 64 else T.RandomResizedCrop(size)
    augmix = v2.AugMix(all_ops=True, severity=3 if size <= 64 else 1)
    return T.Compose([crop, T.RandomHorizontalFlip(), augmix, T.ToTensor()])


def auto_augment_transform(size: int, policy: T.TrivialAugmentWide | T.RandAugment) -> T.Compose:
    """torchvision's TrivialAugmentWide / RandAugment on PIL images after the crop + flip of the families
    `trivialaugment` / `randaugment` (RandomCrop(size, 4) up to 64 px, RandomResizedCrop above)."""
    crop = T.RandomCrop(size, padding=4) if size <= 64 else T.RandomResizedCrop(size)
    return T.Compose([crop, T.RandomHorizontalFlip(), policy, T.ToTensor()])


def _pil_augment(im: Image.Image, severity: float) -> Image.Image:
    """One op of pixmix_utils.py ``augmentations`` (AugMix's 9, on PIL) at level U(0.1, severity)."""
    level, size, sign = random.uniform(0.1, severity), im.size[0], random.choice((-1, 1))
    aff = partial(im.transform, im.size, Image.AFFINE, resample=Image.BILINEAR)
    return random.choice([
        lambda: ImageOps.autocontrast(im), lambda: ImageOps.equalize(im),
        lambda: ImageOps.posterize(im, 4 - int(level * 4 / 10)),
        lambda: ImageOps.solarize(im, 256 - int(level * 256 / 10)),
        lambda: im.rotate(sign * int(level * 30 / 10), resample=Image.BILINEAR),
        lambda: aff((1, sign * level * 0.3 / 10, 0, 0, 1, 0)), lambda: aff((1, 0, 0, sign * level * 0.3 / 10, 1, 0)),
        lambda: aff((1, 0, sign * int(level * (size / 3) / 10), 0, 1, 0)),
        lambda: aff((1, 0, 0, 0, 1, sign * int(level * (size / 3) / 10))),
    ])()


def pixmix_transform(size: int, k: int = 4, beta: float = 3.0) -> Callable[[Image.Image], torch.Tensor]:
    """PixMix's per-image pipeline (andyzoujm/pixmix cifar.py ``pixmix``, pixmix_utils.py ops and mixings) after
    the crop + flip, with 100 of urrlkit's fractals (Resize(size + 4) squares) as the mixing set."""
    crop = T.Compose([T.RandomCrop(size, padding=4) if size <= 64 else T.RandomResizedCrop(size),
                      T.RandomHorizontalFlip()])
    severity = 3.0 if size <= 64 else 1.0
    pics = [Image.fromarray(p.permute(1, 2, 0).numpy()) for p in fractal_images(100, mixing_size(size))]
    pic_crop, tensor = T.RandomCrop(size), T.ToTensor()

    def ab() -> tuple[float, float]:
        if random.random() < 0.5:
            return random.betavariate(beta, 1), random.betavariate(1, beta)
        return 1 + random.betavariate(1, beta), -random.betavariate(1, beta)

    def run(im: Image.Image) -> torch.Tensor:
        orig, pic = crop(im), tensor(pic_crop(random.choice(pics)))
        mixed = tensor(_pil_augment(orig, severity) if random.random() < 0.5 else orig)
        for _ in range(random.randint(0, k)):
            partner = tensor(_pil_augment(orig, severity)) if random.random() < 0.5 else pic
            a, b = ab()
            if random.random() < 0.5:
                mixed = ((a * (mixed * 2 - 1) + b * (partner * 2 - 1)) + 1) / 2
            else:
                mixed = (mixed * 2) ** a * (partner * 2).clip(1e-37) ** b / 2
            mixed = mixed.clip(0, 1)
        return mixed

    return run


class URRLTwoViews(Dataset):
    """TwoCropsTransform with the Eq. 2 family draw per view, per image, on PIL images."""

    def __init__(self, images: list[Image.Image], size: int, p: float = 0.5) -> None:
        self.images = images
        self.moco = moco_v2_transform(size)
        self.augmix = augmix_transform(size)
        self.p = p

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> list[torch.Tensor]:
        img = self.images[i]
        return [(self.augmix if random.random() < self.p else self.moco)(img) for _ in range(2)]


def loader_views_per_s(loader: DataLoader, workers: int) -> float:
    """Views per second (two per image) through a loader whose batches end with one entry per image (labels or
    indices), timed from the moment every worker has delivered its first batch: start-up is not augmentation
    time, and no batch that a worker made before the clock started is counted."""
    it = iter(loader)
    for _ in range(max(1, workers)):
        next(it)
    start, views = time.perf_counter(), 0
    for batch in it:
        views += 2 * len(batch[-1])
    if not views:
        raise ValueError("no batch left to time: give the loader more batches than workers")
    return views / (time.perf_counter() - start)


def torchvision_views_per_s(images: list[Image.Image], size: int, workers: int, batch: int) -> float:
    loader = DataLoader(URRLTwoViews(images, size), batch_size=batch, num_workers=workers,
                        worker_init_fn=lambda w: random.seed(1000 + w))
    return loader_views_per_s(loader, workers)


# ---------------------------------------------------------------------------------------- urrlkit sampler


def urrlkit_views_per_s(x: torch.Tensor, size: int, device: torch.device, reps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    sampler = build_sampler(urrl_families(), image_size=size, views=2)
    g = torch.Generator(device).manual_seed(0)
    x = x.to(device)
    sampler(x, g)  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        sampler(x, g)
    sync()
    return reps * 2 * x.shape[0] / (time.perf_counter() - start)


def per_family_us_per_view(x: torch.Tensor, pil: list[Image.Image], size: int, seconds: float) -> dict:
    """Single-threaded µs per view of each family of the URRL mix, urrlkit (batched, in process) against the
    official per-image pipeline: where the speedup at a size comes from, family by family."""
    torch.set_num_threads(1)
    official = {"moco_v2": moco_v2_transform(size), "augmix_allop": augmix_transform(size),
                "trivialaugment": auto_augment_transform(size, T.TrivialAugmentWide()),
                "randaugment": auto_augment_transform(size, T.RandAugment()), "pixmix": pixmix_transform(size)}
    out = {}
    for name in [*official, "prime"]:  # prime: no per-image reference (PRIME's own module is batched)
        transform = official.get(name)
        sampler = build_sampler([FamilySpec(name=name)], image_size=size, views=1)
        g = torch.Generator().manual_seed(0)
        sampler(x, g)
        start, views = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            sampler(x, g)
            views += x.shape[0]
        ours = (time.perf_counter() - start) / views * 1e6
        if transform is None:
            out[name] = {"urrlkit_us_per_view": round(ours, 1)}
            continue
        random.seed(0)
        for im in pil[:4]:
            transform(im)
        start, views = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            for im in pil:
                transform(im)
            views += len(pil)
        theirs = (time.perf_counter() - start) / views * 1e6
        out[name] = {"urrlkit_us_per_view": round(ours, 1), "torchvision_us_per_view": round(theirs, 1),
                     "speedup": round(theirs / ours, 2)}
    return out


class StoredImages(Dataset):
    """(uint8 image, index) items cycling over a stored batch, as urrlkit's pretraining loader yields them."""

    def __init__(self, x: torch.Tensor, n: int) -> None:
        self.x, self.n = x, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i % len(self.x)], i


def urrlkit_workers_views_per_s(x: torch.Tensor, size: int, workers: int, batches: int) -> float:
    """The sampler in DataLoader workers (one thread each), as `urrl pretrain` runs it on a CPU with
    data.workers ≥ 1 (``data.augment_in = "auto"``): each worker makes whole batches of views."""
    sampler = build_sampler(urrl_families(), image_size=size, views=2)
    b = x.shape[0]
    loader = DataLoader(StoredImages(x, b * (workers + batches)), batch_size=b, num_workers=workers,
                        collate_fn=AugmentingCollate(sampler, seed=0))
    return loader_views_per_s(loader, workers)


def stored(size: int) -> int:
    return 256 if size == 224 else size


def load_images(size: int, n: int) -> torch.Tensor:
    """n real images (the bundled CIFAR-10 sample, cycled) as uint8 at the stored size for `size`."""
    ds = build("cifar10-sample", DataRequest(None, "train", 32))
    x = ds.images.repeat(-(-n // len(ds)), 1, 1, 1)[:n]
    side = stored(size)
    if side == 32:
        return x.clone()
    chunks = [F.interpolate(c.float(), size=(side, side), mode="bilinear", align_corners=False)
              .round_().clamp_(0, 255).to(torch.uint8) for c in x.split(32)]
    return torch.cat(chunks)


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; ru_maxrss is a lifetime high-water mark, useless here)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sampled_peak(fn: Callable[[], object], probe: Callable[[], int], every_s: float = 2e-4) -> int:
    """Run fn() while a thread samples probe(); torch ops release the GIL, so the sampler sees the call."""
    peak, done = [probe()], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], probe())
            time.sleep(every_s)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        fn()
    finally:
        done.set()
        t.join()
    return max(peak[0], probe())


def memory_probe(device: str) -> None:
    """Run in a fresh process: peak memory of one URRL call on a 256-image batch at 224 px (256 stored).

    On the CPU the process runs with glibc's malloc defaults (large blocks go back to the OS when freed, so RSS
    follows live memory; with the `urrl` tuning freed memory is kept and reused, which hides the call's own
    peak) and a random uint8 input made in one allocation, so no earlier, higher peak masks the call's.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        x = load_images(224, 256).to(dev)
    else:
        x = torch.randint(0, 256, (256, 3, 256, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sampler = build_sampler(urrl_families(), image_size=224, views=2)
    g = torch.Generator(dev).manual_seed(0)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        sampler(x, g)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        method = "torch.cuda.max_memory_allocated minus the resident input"
    else:
        before = rss_bytes()
        peak = sampled_peak(lambda: sampler(x, g), rss_bytes) - before
        method = ("peak RSS during one call (sampled every 0.2 ms) minus the RSS before it, input resident; glibc "
                  "malloc defaults, so RSS follows live memory")
    print(json.dumps({"batch": 256, "size": 224, "stored": 256, "device": str(dev),
                      "peak_bytes": int(peak), "peak_mib": round(peak / 2**20, 1), "method": method}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small smoke run; writes no file by default")
    ap.add_argument("--device", default="cpu", help="device for urrlkit (cpu, cuda); the baseline is CPU")
    ap.add_argument("--sizes", default="32,64,224")
    ap.add_argument("--out", type=Path, default=None, help=f"output JSON (full mode default: {RESULTS})")
    ap.add_argument("--rounds", type=int, default=None, help="best of N rounds per side (default 3; 1 with --quick)")
    ap.add_argument("--baselines", action="store_true", help="also torchvision v2 (per batch) and torchaug on "
                    "urrlkit's device and batch (benchmarks/gpu_baselines.py)")
    ap.add_argument("--jpeg", type=Path, default=None, help="JPEG tree: also time JPEG → views at 224 px, urrlkit's "
                    "device decoding and DALI")
    ap.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-malloc-tuning", action="store_true",
                    help="keep glibc's malloc defaults (the `urrl` command tunes them; forked workers inherit it)")
    args = ap.parse_args()
    tuned = False if args.no_malloc_tuning else tune_glibc_malloc()
    if args.memory_probe:
        memory_probe(args.device)
        return

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    device = torch.device(args.device)
    # (batch of images per urrlkit call, urrlkit calls, images through the baseline loader, batch per worker,
    # timed batches through urrlkit's workers) per size
    plan = {32: (512, 8, 3072, 512, 20), 64: (256, 6, 1536, 256, 16), 224: (128, 3, 384, 32, 14)}
    if device.type == "cuda":  # many more calls, so that launch overhead and clock ramp-up average out
        plan = {32: (2048, 20, 768 * cores, 0, 0), 64: (1024, 20, 384 * cores, 0, 0),
                224: (256, 20, 96 * cores, 0, 0)}
    if args.quick:
        plan = {32: (128, 2, 256, 64, 2), 64: (64, 2, 128, 32, 2), 224: (16, 1, 64, 8, 2)}
    rounds = args.rounds or (1 if args.quick else 3)
    load_start = os.getloadavg()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        batch, reps, n_tv, worker_batch, worker_batches = plan[size]
        x = load_images(size, batch)
        pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in load_images(size, n_tv)]
        # urrlkit in one process with 1 intra-op thread and with one per core (on a shared machine OpenMP
        # barriers can make 2 threads slower than 1), and on the CPU in one single-threaded DataLoader worker
        # per core, exactly as the baseline is fed. The sides alternate so that load from other processes
        # hits them alike.
        # Best of `rounds` for every side: a busy neighbour on a shared VM slows single rounds at random.
        one = theirs = many = pooled = 0.0
        for _ in range(rounds):
            one = max(one, urrlkit_views_per_s(x, size, device, reps, 1))
            theirs = max(theirs, torchvision_views_per_s(pil, size, cores, batch=32 if size < 224 else 16))
            many = max(many, urrlkit_views_per_s(x, size, device, max(1, reps // 3), cores))
            if device.type == "cpu":
                pooled = max(pooled, urrlkit_workers_views_per_s(x[:worker_batch], size, cores, worker_batches))
        families = per_family_us_per_view(x, pil[:64], size, 0.5 if args.quick else 3.0) \
            if device.type == "cpu" else None
        modes = {"1_thread": one, f"{cores}_threads": many, f"{cores}_workers": pooled}
        best = max(modes, key=modes.__getitem__)
        ours = modes[best]
        rows.append({"size": size, "urrlkit_views_per_s": round(ours, 1),
                     "torchvision_views_per_s": round(theirs, 1), "speedup": round(ours / theirs, 2),
                     "device": str(device), "urrlkit_mode": best,
                     **{f"urrlkit_views_per_s_{k}": round(v, 1) for k, v in modes.items() if v},
                     "batch": batch, "worker_batch": worker_batch if pooled else None,
                     **({"per_family_1_thread": families} if families else {})})
        if args.baselines:
            rows[-1]["other_libraries"] = gpu_baselines.compare(x.to(device), size, max(1, reps // 2))
        print(json.dumps(rows[-1]), flush=True)
    jpeg_path = None
    if args.jpeg is not None:
        jb = 16 if args.quick else 256
        files = gpu_baselines.jpeg_files(args.jpeg, jb * (1 if args.quick else 4))
        jpeg_path = {"urrlkit_jpeg": gpu_baselines.urrlkit_jpeg(files, 224, jb, 1 if args.quick else 10, device),
                     "dali": gpu_baselines.dali(files, 224, jb, 1 if args.quick else 10)}
        print(json.dumps({"jpeg_path": jpeg_path}), flush=True)

    probe = subprocess.run([sys.executable, __file__, "--memory-probe", "--device", args.device,
                            *(["--no-malloc-tuning"] if device.type == "cpu" else [])],
                           capture_output=True, text=True, check=True)
    memory = json.loads(probe.stdout.strip().splitlines()[-1])
    print(json.dumps({"peak_memory": memory}))

    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        report = {
            "benchmark": "URRL sampler (p = 0.5, 2 views) vs official per-image torchvision pipelines",
            "mode": "quick" if args.quick else "full",
            "results": rows,
            **({"jpeg_path": jpeg_path} if jpeg_path else {}),
            "peak_memory": memory,
            "machine": {"cores": cores, "cpu": platform.processor() or platform.machine(),
                        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                        "torch": torch.__version__, "torchvision": torchvision.__version__,
                        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                        "malloc_tuning": tuned,
                        "rounds": rounds,
                        "urrlkit_modes": "1 thread, one thread per core, one single-threaded DataLoader "
                                         "worker per core (CPU only); the fastest is reported",
                        "load_average_at_start": [round(v, 2) for v in load_start],
                        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
                        "baseline": f"DataLoader(num_workers={cores}, one thread each), PIL MoCo v2 + "
                                    "v2.AugMix(all_ops=True) per image"},
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
