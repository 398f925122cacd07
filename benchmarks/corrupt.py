"""Corruption throughput: urrlkit's batched torch ops vs the per-image numpy/PIL package `imgcorr`.

Run in a throwaway env that has urrlkit plus `imgcorr` and 'setuptools<81' (imgcorr imports pkg_resources;
never a urrlkit dependency), e.g.

    python -m venv /tmp/bench-venv && echo "$(pwd)/.venv/lib/python3.11/site-packages" > \
        /tmp/bench-venv/lib/python3.11/site-packages/project.pth
    /tmp/bench-venv/bin/pip install imgcorr 'setuptools<81' torchattacks
    /tmp/bench-venv/bin/python benchmarks/corrupt.py

All 15 corruptions at 32 px, severities 1..5 in turn; images from shared/data/cifar10 (the bundled sample if
absent), one thread on both sides. Each side gets one untimed warm-up call per corruption (imgcorr
JIT-compiles with numba). Note that imgcorr applies ImageNet-strength parameters at every size while urrlkit
uses the CIFAR table at 32 px, so this
compares speed, not outputs. Writes benchmarks/results/corrupt.json.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from urrlkit.evaluate.corruptions import COMMON, corrupt

ROOT = Path(__file__).resolve().parents[1]
N_OURS = 1000
N_REF = 100


def load_images(n: int) -> tuple[np.ndarray, str]:
    for p in (
        ROOT.parent / "shared" / "data" / "cifar10" / "test.npz",
        Path("/work/shared/data/cifar10/test.npz"),
    ):
        if p.is_file():
            with np.load(p) as d:
                return d["images"][:: max(1, 10000 // n)][:n], str(p)
    from importlib import resources

    with (
        resources.as_file(resources.files("urrlkit.data") / "sample" / "cifar10-sample.npz") as p,
        np.load(p) as d,
    ):
        imgs = d["test_images"]
    reps = int(np.ceil(n / len(imgs)))
    return np.concatenate([imgs] * reps)[:n], "cifar10-sample"


def main() -> None:
    warnings.filterwarnings("ignore")
    import imgcorr

    # one thread for both sides: imgcorr is single-threaded per image, and the 2 cores here are shared
    torch.set_num_threads(1)

    images, source = load_images(N_OURS)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    per: dict[str, dict[str, float]] = {}
    t_ours_total = t_ref_total = 0.0
    for name in COMMON:
        corrupt(x[:8], name, 1)  # warm-up
        t0 = time.perf_counter()
        for s, chunk in enumerate(torch.chunk(x, 5)):
            corrupt(chunk, name, s + 1, seed=s)
        t_ours = time.perf_counter() - t0
        imgcorr.corrupt(images[0], corruption_name=name, severity=1)  # warm-up (numba JIT)
        t0 = time.perf_counter()
        for i in range(N_REF):
            imgcorr.corrupt(images[i], corruption_name=name, severity=i % 5 + 1)
        t_ref = time.perf_counter() - t0
        ours_ips, ref_ips = N_OURS / t_ours, N_REF / t_ref
        per[name] = {
            "urrlkit_img_per_s": round(ours_ips, 1),
            "imgcorr_img_per_s": round(ref_ips, 1),
            "speedup": round(ours_ips / ref_ips, 2),
        }
        t_ours_total += t_ours / N_OURS
        t_ref_total += t_ref / N_REF
        print(
            f"{name:18s} urrlkit {ours_ips:9.1f} img/s   imgcorr {ref_ips:8.1f} img/s"
            f"   x{ours_ips / ref_ips:.1f}",
            flush=True,
        )
    total = {
        "urrlkit_s_per_image_all15": t_ours_total,
        "imgcorr_s_per_image_all15": t_ref_total,
        "speedup": round(t_ref_total / t_ours_total, 2),
    }
    print(f"total (time for one image through all 15): speedup x{total['speedup']}")
    out = {
        "benchmark": "corruptions at 32 px, all 15, severities 1..5 in turn",
        "images": source,
        "n_urrlkit": N_OURS,
        "n_imgcorr": N_REF,
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
        "imgcorr_version": getattr(imgcorr, "__version__", "1.1.3"),
        "note": "imgcorr uses ImageNet-strength parameters at every size; urrlkit the CIFAR table at 32 px",
        "per_corruption": per,
        "total": total,
    }
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "corrupt.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
