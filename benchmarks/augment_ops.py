"""Launch-count profile on the CPU: how many ATen ops one sampler call runs, per family and for the URRL mix, and
for the device-decoding stage (augment/device_crops.py). On a GPU nearly every op that touches data is one kernel
launch (plus a few for index and scalar work), so these counts, taken on the CPU with the GPU's calling pattern
(no CPU chunking), say how much host time a call costs there: launches × ≈ 5–10 µs.

    python benchmarks/augment_ops.py [--batch 256] [--size 224] [--out benchmarks/results/augment_ops_cpu.json]

Counts: ``aten_ops`` every ATen call the profiler records (nested ones included); ``leaf_ops`` those that call
no other ATen op (what reaches a kernel); ``launching_ops`` the leaves that move data, without pure metadata ops
(views, reshapes, empty allocations, which launch nothing). The same counts at two batch sizes show whether a
family's launches grow with the batch (per-image loops) or not (batched ops).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from urrlkit.augment import build_sampler
from urrlkit.config import FamilySpec
from urrlkit.config.pretext import method_settings

RESULTS = Path(__file__).parent / "results" / "augment_ops_cpu.json"
METADATA = {
    "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::view", "aten::as_strided", "aten::select",
    "aten::slice", "aten::unsqueeze", "aten::squeeze", "aten::expand", "aten::t", "aten::transpose", "aten::permute",
    "aten::reshape", "aten::_reshape_alias", "aten::alias", "aten::detach", "aten::lift_fresh", "aten::unbind",
    "aten::split", "aten::split_with_sizes", "aten::chunk", "aten::narrow", "aten::resize_", "aten::result_type",
    "aten::_unsafe_view", "aten::unflatten", "aten::flatten", "aten::expand_as", "aten::view_as", "aten::diagonal",
    "aten::movedim", "aten::resolve_conj", "aten::resolve_neg", "aten::is_nonzero", "aten::item",
    "aten::_local_scalar_dense", "aten::set_", "aten::contiguous", "aten::to", "aten::_to_copy", "aten::unfold",
}


def urrl_families() -> list:
    """URRL's weighted families (paper Eq. 2, p = 0.5) as the default method expands them."""
    return method_settings({"method": "moco_v2", "p": 0.5}).family_weights()


def count(fn: object) -> dict:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        seconds = time.perf_counter() - start
    events = [e for e in prof.events() if e.name.startswith("aten::")]
    leaves = [e for e in events if not any(c.name.startswith("aten::") for c in e.cpu_children)]
    launching = [e for e in leaves if e.name not in METADATA]
    top: dict[str, int] = {}
    for e in launching:
        top[e.name] = top.get(e.name, 0) + 1
    return {"aten_ops": len(events), "leaf_ops": len(leaves), "launching_ops": len(launching),
            "seconds_profiled": round(seconds, 3),
            "top_launching": dict(sorted(top.items(), key=lambda kv: -kv[1])[:8])}


def sampler_counts(names: list[str], x: torch.Tensor, size: int) -> dict:
    specs = [FamilySpec(name=n) for n in names] if names != ["urrl"] else urrl_families()
    sampler = build_sampler(specs, image_size=size, views=2, chunk_mib=None)  # the GPU's pattern: no chunks
    g = torch.Generator().manual_seed(0)
    sampler(x[:2], g)  # first-call work (caches) is not counted
    return count(lambda: sampler(x, g))


def decode_counts(batch: int, size: int) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from jpeg_tree import build_tree

    from urrlkit.augment.device_crops import EncodedFiles, EncodedViewsCollate, decode_views

    with tempfile.TemporaryDirectory() as tmp:
        build_tree(Path(tmp), images=batch, classes=4, processes=1)
        files = sorted(Path(tmp).rglob("*.JPEG"))
        sampler = build_sampler(urrl_families(), image_size=size, views=2, chunk_mib=None)
        ds = EncodedFiles(files, torch.zeros(len(files), dtype=torch.int64))
        enc, fam, _ = EncodedViewsCollate(sampler, 0)([(ds[i][0], i) for i in range(len(files))])
        decode_views(enc, "cpu")
        out = {"decode_and_cut": count(lambda: decode_views(enc, "cpu"))}
        gen = torch.Generator().manual_seed(enc.photo_seed)
        cuts = decode_views(enc, "cpu")
        out["photometric_urrl"] = count(lambda: sampler.photometric(cuts, fam, gen))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256, help="images per call (2 views each)")
    ap.add_argument("--small-batch", type=int, default=16, help="second batch size, to see what scales with B")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--decode-batch", type=int, default=64, help="JPEGs for the device-decoding stage count")
    ap.add_argument("--families", default="moco_v2,augmix_allop,augmix,augmix_moco,instdis,urrl")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    stored = 256 if args.size == 224 else args.size
    x = torch.randint(0, 256, (args.batch, 3, stored, stored), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    rows = {}
    for name in args.families.split(","):
        big = sampler_counts([name], x, args.size)
        small = sampler_counts([name], x[:args.small_batch], args.size)
        rows[name] = {f"views_{2 * args.batch}": big, f"views_{2 * args.small_batch}": small}
        print(name, big["launching_ops"], "launching ops per call;", small["launching_ops"], "at",
              2 * args.small_batch, "views", flush=True)
    dec = decode_counts(args.decode_batch, args.size)
    print("device decoding:", {k: v["launching_ops"] for k, v in dec.items()}, flush=True)
    report = {
        "benchmark": "ATen ops per sampler call on the CPU, the GPU's calling pattern (chunk_mib=None)",
        "size": args.size, "stored": stored, "views_per_call": 2 * args.batch, "families": rows,
        "device_decoding": {"jpegs": args.decode_batch, **dec},
        "note": "launching_ops ≈ CUDA kernel launches per call; the GPU run (benchmarks/gpu_issue15.sh) measures "
                "the host time they cost (benchmarks/profile_sampler.py --device cuda)",
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                    "threads": 1, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
