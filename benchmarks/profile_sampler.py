"""Where a URRL sampler call spends its time (torch.profiler): `python benchmarks/profile_sampler.py --device cuda`.
Prints the top ops by device time and by host time for a 256-image batch at 224 px (256 px stored)."""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from urrlkit.augment import build_sampler
from urrlkit.config.pretext import method_settings


def urrl_families() -> list:
    """URRL's weighted families (paper Eq. 2, p = 0.5) as the default method expands them."""
    return method_settings({"method": "moco_v2", "p": 0.5}).family_weights()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args()
    dev = torch.device(args.device)
    stored = 256 if args.size == 224 else args.size
    x = torch.randint(0, 256, (args.batch, 3, stored, stored), dtype=torch.uint8, device=dev)
    sampler = build_sampler(urrl_families(), image_size=args.size, views=2)
    g = torch.Generator(dev).manual_seed(0)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(3):
        sampler(x, g)
    sync()
    t = time.perf_counter()
    for _ in range(10):
        sampler(x, g)
    sync()
    print(f"{10 * 2 * args.batch / (time.perf_counter() - t):.0f} views/s ({args.device}, {args.size} px, "
          f"batch {args.batch})")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(3):
            sampler(x, g)
        sync()
    key = "cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))
    if dev.type == "cuda":
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
