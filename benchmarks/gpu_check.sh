#!/usr/bin/env bash
# One prepared GPU session (run through the device tool; see docs/augment.md): the augmentation benchmark on
# CUDA, a per-family breakdown at 224 px, and the quickstart pretraining on the GPU in bf16 (Accelerate path).
# Expects the wheels the GPU image lacks in .whl/ and writes everything under $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
  | tee -a "$OUT/gpu.txt"
timeout 330 python3 benchmarks/augment.py --device cuda --out "$OUT/augment_gpu.json" 2>&1 | tee "$OUT/augment.log"
timeout 90 python3 - <<'PY' 2>&1 | tee "$OUT/families.log"
import time, torch
from urrlkit.augment import build_sampler
from urrlkit.recipe import FamilySpec
dev = torch.device("cuda")
x = torch.randint(0, 256, (256, 3, 256, 256), dtype=torch.uint8, device=dev)
for fams in (["moco_v2"], ["augmix"], ["augmix_allop"], ["augmix_moco"]):
    s = build_sampler([FamilySpec(name=f, weight=1.0) for f in fams], image_size=224, views=2)
    g = torch.Generator(dev).manual_seed(0)
    s(x, g); torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(10):
        s(x, g)
    torch.cuda.synchronize()
    print(fams[0], round(10 * 2 * 256 / (time.perf_counter() - t)), "views/s at 224 px, batch 256", flush=True)
PY
timeout 150 python3 -m urrlkit.cli pretrain recipes/quickstart.toml --set run.output_dir=/tmp/runs \
  --set optim.mixed_precision=bf16 --set run.trackers=[] 2>&1 | tail -25 | tee "$OUT/quickstart_gpu.log"
