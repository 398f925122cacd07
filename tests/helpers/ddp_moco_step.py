"""One MoCo step in two real gloo processes (accelerate.debug_launcher); rank 0 saves the result.

Used by tests/pretext/test_pretext_moco.py to check that cross-process shuffle-BN and key gathering match the
single-process maths (bn_groups = world size)."""

from __future__ import annotations

import os
import sys

import torch
from accelerate import Accelerator, debug_launcher
from safetensors.torch import save_file

from urrlkit.models import build_encoder
from urrlkit.pretext.methods.moco_v2 import MoCoV2
from urrlkit.pretext.model import BuildContext, PretextModel, build_model

BATCH, SIZE = 8, 16
SEED = 11  # run.seed: both runs draw their shuffle permutations from it


def make(groups: int, processes: int = 1) -> tuple[PretextModel, torch.optim.Optimizer]:
    torch.manual_seed(0)
    settings = MoCoV2(queue_size=32, momentum=0.9, temperature=0.2, head_dim=8, head_hidden=16, bn_groups=groups)
    model = build_model(settings, build_encoder("resnet10", small_stem=True, width=4),
                        BuildContext(num_samples=0, seed=SEED, processes=processes))
    return model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(BATCH, 3, SIZE, SIZE, generator=g), torch.rand(BATCH, 3, SIZE, SIZE, generator=g)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _worker() -> None:
    torch.set_num_threads(1)
    acc = Accelerator(cpu=True)
    model, opt = make(groups=1, processes=acc.num_processes)
    model, opt = acc.prepare(model, opt)
    xq, xk = data()
    n = BATCH // acc.num_processes
    r = acc.process_index
    index = torch.arange(n)
    for _ in range(2):
        out = model([xq[r * n:(r + 1) * n], xk[r * n:(r + 1) * n]], index)
        acc.backward(out.loss)
        opt.step()
        opt.zero_grad()
    if acc.is_main_process:
        save_file(state(acc.unwrap_model(model)), os.environ["URRL_TEST_OUT"])
    acc.wait_for_everyone()


if __name__ == "__main__":
    os.environ["URRL_TEST_OUT"] = sys.argv[1]
    debug_launcher(_worker, num_processes=2)
