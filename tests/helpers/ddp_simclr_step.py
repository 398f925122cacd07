"""Two SimCLR steps in two real gloo processes (accelerate.debug_launcher); rank 0 saves the weights and both
steps' losses.

Used by tests/pretext/methods/test_simclr.py: with negatives gathered from both processes (and their gradients
carried back), the run must equal one process computing NT-Xent over the concatenated global batch, each
process's half through the network on its own (BN statistics are per process)."""

from __future__ import annotations

import os
import sys

import torch
from accelerate import Accelerator, debug_launcher
from safetensors.torch import save_file

from urrlkit.models import build_encoder
from urrlkit.pretext.methods.simclr import SimCLR
from urrlkit.pretext.model import BuildContext, PretextModel, build_model

BATCH, SIZE, STEPS = 8, 16, 2
TEMPERATURE = 0.5


def make(processes: int = 1) -> tuple[PretextModel, torch.optim.Optimizer]:
    torch.manual_seed(0)
    settings = SimCLR(temperature=TEMPERATURE, head_dim=8, head_hidden=16, head_layers=2)
    model = build_model(settings, build_encoder("resnet10", small_stem=True, width=4),
                        BuildContext(num_samples=0, processes=processes))
    return model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(BATCH, 3, SIZE, SIZE, generator=g), torch.rand(BATCH, 3, SIZE, SIZE, generator=g)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _worker() -> None:
    torch.set_num_threads(1)
    acc = Accelerator(cpu=True)
    model, opt = make(processes=acc.num_processes)
    model, opt = acc.prepare(model, opt)
    v1, v2 = data()
    n = BATCH // acc.num_processes
    r = acc.process_index
    losses = []
    for _ in range(STEPS):
        out = model([v1[r * n:(r + 1) * n], v2[r * n:(r + 1) * n]], torch.arange(n))
        acc.backward(out.loss)
        opt.step()
        opt.zero_grad()
        losses.append(acc.reduce(out.loss.detach(), reduction="mean"))
    if acc.is_main_process:
        save_file({**state(acc.unwrap_model(model)), "losses": torch.stack(losses)}, os.environ["URRL_TEST_OUT"])
    acc.wait_for_everyone()


if __name__ == "__main__":
    os.environ["URRL_TEST_OUT"] = sys.argv[1]
    debug_launcher(_worker, num_processes=2)
