"""Two training steps of MoCo v3 or DINO in two real gloo processes (accelerate.debug_launcher), each on half the
batch; rank 0 saves the model's state. Used by tests/pretext/methods/test_moco_v3.py and test_dino.py to check
the cross-process parts against one process on the whole batch: MoCo v3's keys gathered from every process (the
positive of rank r's query i at column N·r + i), DINO's centre all-reduced, the teacher's EMA, the last layer's
gradients dropped after DDP's all-reduce in the freeze epoch.

The models run in eval mode, so BN normalises with its running statistics and every image's output is its own:
the two launches then compute the same maths (in train mode BN statistics are per process by design)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from accelerate import Accelerator, debug_launcher
from safetensors.torch import load_file, save_file

from urrlkit.engine.progress import Progress
from urrlkit.models import build_encoder
from urrlkit.pretext.model import BuildContext, PretextModel, build_model

BATCH = 8
# Step 1 in epoch 0 (DINO's last layer frozen), step 2 in epoch 1.
PROGRESS = [Progress(0, 4, 0, 2, 0, 2), Progress(2, 4, 1, 2, 0, 2)]


def make(method: str, processes: int = 1) -> tuple[PretextModel, torch.optim.Optimizer]:
    from urrlkit.pretext.methods.dino import DINO
    from urrlkit.pretext.methods.moco_v3 import MoCoV3

    torch.manual_seed(0)
    families = [{"name": "byol"}]
    settings = (MoCoV3(families=families, dim=8, mlp_dim=16, temperature=0.2, momentum=0.9) if method == "moco_v3"
                else DINO(families=families, out_dim=16, hidden_dim=16, bottleneck_dim=8, local_crops=1, local_size=8,
                          momentum_teacher=0.9, use_bn_in_head=True))
    model = build_model(settings, build_encoder("resnet10", small_stem=True, width=4),
                        BuildContext(num_samples=0, processes=processes))
    model.eval()
    return model, torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)


def data(method: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    sizes = [16, 16] if method == "moco_v3" else [16, 16, 8]
    return [torch.rand(BATCH, 3, s, s, generator=g) for s in sizes]


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def train(model: torch.nn.Module, opt: torch.optim.Optimizer, views: list[torch.Tensor], backward: object,
          after_step: object) -> None:
    for progress in PROGRESS:
        out = model(views, torch.arange(views[0].shape[0]), progress)
        backward(out.loss)  # type: ignore[operator]
        opt.step()
        opt.zero_grad(set_to_none=True)
        after_step(progress)  # type: ignore[operator]


def assert_two_processes_match_one(method: str, tmp: Path) -> None:
    """This script's two gloo processes on half the batch each reach the state of one process on the whole batch
    after two steps (to float32 rounding)."""
    out = tmp / "ddp.safetensors"
    proc = subprocess.run([sys.executable, __file__, method, str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ddp = load_file(str(out))
    model, opt = make(method)
    train(model, opt, data(method), lambda loss: loss.backward(), model.after_step)
    single = state(model)
    assert set(single) == set(ddp)
    for key, value in single.items():
        assert torch.allclose(value.float(), ddp[key].float(), atol=2e-5, rtol=1e-4), key


def _worker() -> None:
    torch.set_num_threads(1)
    method = os.environ["URRL_TEST_METHOD"]
    acc = Accelerator(cpu=True)
    model, opt = make(method, processes=acc.num_processes)
    model, opt = acc.prepare(model, opt)
    n, r = BATCH // acc.num_processes, acc.process_index
    views = [v[r * n:(r + 1) * n] for v in data(method)]
    train(model, opt, views, acc.backward, acc.unwrap_model(model).after_step)
    if acc.is_main_process:
        save_file(state(acc.unwrap_model(model)), os.environ["URRL_TEST_OUT"])
    acc.wait_for_everyone()


if __name__ == "__main__":
    os.environ["URRL_TEST_METHOD"], os.environ["URRL_TEST_OUT"] = sys.argv[1], sys.argv[2]
    debug_launcher(_worker, num_processes=2)
