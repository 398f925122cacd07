#!/usr/bin/env bash
# Run HERE (a machine with PyPI) before benchmarks/gpu_issue15.sh: downloads into .whl/ the Python 3.12 x86-64
# wheels that the GPU image lacks (it has torch, torchvision, accelerate, safetensors, pillow, numpy, scipy, ...
# but no pydantic, tomli-w, huggingface-hub 2.x and its httpx2, torchaug; versions as in the dev venv), and keeps .whl/ out of git. ~15 MB, well inside what
# travels with the working tree. DALI (several hundred MB) cannot travel: its entry is skipped unless the image
# has it.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.whl/' >> .git/info/exclude; }
mkdir -p .whl
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_34_x86_64)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 tomli-w==1.2.0 \
  huggingface-hub==2.4.0 typer==0.29.2 torchaug==0.6.1 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 \
  click==8.5.1 hf-xet==1.8.0 annotated-doc==0.0.7
ls -la .whl
du -sh .whl
