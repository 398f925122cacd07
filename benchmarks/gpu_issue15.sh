#!/usr/bin/env bash
# Issue 15 on one GPU, in one run of at most ~9.5 minutes (every step has its own timeout; the sum is 570 s), from
# the repository root of a bare H100/H200 machine. See docs/gpu_input.md. Writes under $OUT (default /tmp/out):
#   log.txt                  card, driver, torch/torchvision versions, optional libraries present, step times, the
#                            CUDA tests (URRL_TEST_GPU=1: nvJPEG vs the CPU path, the side-stream prefetcher,
#                            pretraining with data.decode = "device" on CUDA, the new robust families on CUDA and
#                            TrivialAugment/RandAugment against torchvision on CUDA), each benchmark's output, and
#                            benchmarks/profile_sampler.py --device cuda (host vs device time of one call)
#   augment_gpu.json         benchmarks/augment.py --device cuda --baselines --jpeg: views/s at 32/64/224 px for
#                            urrlkit, torchvision v2 (per batch) and torchaug on the GPU, and JPEG → views
#                            (urrlkit device decoding vs DALI where installed)
#   pretrain_jpeg_gpu.json   benchmarks/pretrain.py --jpeg: ResNet-50, 224 px, URRL p = 0.5, bf16, 2,000 JPEGs:
#                            engine end to end vs a bare MoCo v2 loop on the official torchvision pipeline
#   pretrain_gpu.json        the CIFAR-size benchmark (ResNet-18 w64, 32 px, batch 256, 10,000 images)
#
# Packages: the GPU image has torch, torchvision, accelerate, ... but reaches no registry. Before the run, HERE:
#   bash benchmarks/gpu_wheels.sh          (wheels into .whl/, ignored by git; carry it: carry=[".whl"])
# On a machine that does reach PyPI, URRL_PIP_ONLINE=1 installs the pinned stack instead (and tries DALI).
# URRL_GPU_DRY=1: the same steps on a CPU with tiny sizes and the dev venv (what CI-less checking can do; ~2 min).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; LOG=$OUT/log.txt
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
t0=$(date +%s)
step() { echo "== $1 at +$(( $(date +%s) - t0 )) s" | tee -a "$LOG"; }
DRY=${URRL_GPU_DRY:-0}
if [ "$DRY" = 1 ]; then  # tiny CPU versions of every step
  DEV=cpu; TREE=40; TESTS="tests/engine/test_prefetch.py tests/augment/test_decode_device.py"
  AUG=(--quick --sizes 32); PROF=(--batch 8 --size 64); JPEG=(--quick --batch 8 --epochs 2 --workers 1)
  CIFAR=(--width 4 --batch 32 --epochs 2)
else
  DEV=cuda; TREE=2000; TESTS="tests/augment/test_decode_device.py tests/engine/test_prefetch.py tests/augment/test_geometry_original.py tests/augment/test_augment_prime.py::test_new_robust_families_run_on_cuda tests/augment/test_augment_autoaugment.py::test_on_cuda_equals_torchvision_on_cuda"
  AUG=(--rounds 1); PROF=(); JPEG=(--batch 256 --epochs 4 --workers 16)
  CIFAR=(--width 64 --batch 256 --images 10000 --epochs 4)
fi

step install
if [ "$DRY" = 1 ]; then
  export PYTHONPATH=$PWD:$PWD/benchmarks
elif [ "${URRL_PIP_ONLINE:-0}" = 1 ]; then
  python3 -m pip install -q torch==2.14.1 torchvision==0.29.1 -e '.[test]' || exit 1
  python3 -m pip install -q torchaug==0.6.1 --no-deps || true
  python3 -m pip install -q nvidia-dali-cuda130 || true
  export PYTHONPATH=$PWD/benchmarks
elif ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks
else
  echo "no .whl/ and URRL_PIP_ONLINE unset: run 'bash benchmarks/gpu_wheels.sh' here first" >&2; exit 1
fi
[ "$DRY" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$LOG"
python3 - <<'PY' 2>&1 | tee -a "$LOG"
import importlib.util, torch, torchvision
print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
for name in ("torchaug", "nvidia.dali", "pydantic", "accelerate", "huggingface_hub"):
    try:
        ok = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        ok = False
    print(name, "present" if ok else "absent")
import urrlkit.augment.device_crops  # noqa: F401  (the package imports with the carried wheels)
PY

step "JPEG tree ($TREE ImageNet-sized files)"
rm -rf /tmp/jpeg_i15
timeout 40 python3 benchmarks/jpeg_tree.py /tmp/jpeg_i15 --images $TREE --classes 10 2>&1 | tail -1 | tee -a "$LOG"
echo "   exit ${PIPESTATUS[0]}" | tee -a "$LOG"

step "tests (URRL_TEST_GPU=1)"
URRL_TEST_GPU=1 timeout 100 python3 -m pytest -p no:cacheprovider -rs -s -W ignore::DeprecationWarning $TESTS \
  2>&1 | tail -25 | tee -a "$LOG"
echo "   exit ${PIPESTATUS[0]}" | tee -a "$LOG"

step "augment.py --device $DEV --baselines --jpeg"
timeout 190 python3 benchmarks/augment.py --device $DEV "${AUG[@]}" --baselines --jpeg /tmp/jpeg_i15 \
  --out "$OUT/augment_gpu.json" 2>&1 | tail -12 | tee -a "$LOG"
echo "   exit ${PIPESTATUS[0]}" | tee -a "$LOG"

step "profile_sampler.py --device $DEV"
timeout 40 python3 benchmarks/profile_sampler.py --device $DEV "${PROF[@]}" 2>&1 | tail -40 >> "$LOG"
echo "   exit ${PIPESTATUS[0]}" | tee -a "$LOG"

step "pretrain.py --jpeg (ResNet-50, 224 px, bf16; tiny in the dry run)"
timeout 130 python3 benchmarks/pretrain.py --jpeg /tmp/jpeg_i15 "${JPEG[@]}" --out "$OUT/pretrain_jpeg_gpu.json" \
  2>&1 | tail -22 | tee -a "$LOG"
echo "   exit ${PIPESTATUS[0]}" | tee -a "$LOG"

step "pretrain.py (CIFAR size)"
timeout 60 python3 benchmarks/pretrain.py "${CIFAR[@]}" --out "$OUT/pretrain_gpu.json" 2>&1 | tail -14 | tee -a "$LOG"
echo "   exit ${PIPESTATUS[0]}" | tee -a "$LOG"
step done
