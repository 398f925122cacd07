"""The module a pretraining method trains: the encoder, the method's own parts, and the method's settings that
drive them (urrlkit/config/pretext.py `MethodSettings`; the built-in methods are urrlkit/pretext/methods/).

`PretextModel` is the one nn.Module the training loop, Accelerate (DDP), the optimizer and the checkpoints see,
whatever the method: its parameters are the encoder's then the parts' (in the order `build` returns them), its
state the parts' buffers and generators. `forward` hands the views to the method's `forward`, which returns one
`StepOutput` (loss, features for the online probe, embeddings for the health monitor, stats)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from urrlkit.engine.progress import Progress, StepOutput

if TYPE_CHECKING:
    from urrlkit.config.pretext import MethodSettings
    from urrlkit.models import Encoder

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class BuildContext:
    """What a method's `build` may need besides its settings: the data set size (memory banks), run.seed (streams
    of its own, e.g. MoCo's shuffle-BN permutations), the process count and per-process batch (BN groups), the
    view size and the training length (schedules)."""

    num_samples: int
    seed: int = 0
    processes: int = 1
    batch_per_process: int | None = None
    image_size: int = 32
    epochs: int = 1
    steps_per_epoch: int = 1


class PretextModel(nn.Module):
    """The encoder, the method's parts (`parts[name]`), its settings (`method`) and the launch it was built for
    (`ctx`)."""

    def __init__(self, method: MethodSettings, encoder: Encoder, parts: dict[str, nn.Module],
                 ctx: BuildContext) -> None:
        super().__init__()
        self.encoder = encoder
        self.parts = nn.ModuleDict(parts)
        # Plain attributes (a Pydantic model, a dataclass): neither state nor children of the module.
        self.method = method
        self.ctx = ctx

    def part(self, name: str, kind: type[M]) -> M:
        """parts[name], checked to be a `kind` (the method's own declaration of what it built)."""
        module = self.parts[name]
        if not isinstance(module, kind):
            raise TypeError(f"{type(self.method).__name__}: part {name!r} is a {type(module).__name__}, "
                            f"not a {kind.__name__}")
        return module

    def forward(self, views: list[torch.Tensor], index: torch.Tensor, progress: Progress | None = None
                ) -> StepOutput:
        return self.method.forward(self, views, index, progress or Progress(0, 1, 0, 1))

    def after_step(self, progress: Progress) -> None:
        self.method.after_step(self, progress)


def build_model(method: MethodSettings, encoder: Encoder, ctx: BuildContext) -> PretextModel:
    """The method's model around `encoder`: `method.build` makes the parts, drawing from the global generator
    (seeded by the caller)."""
    return PretextModel(method, encoder, method.build(encoder, ctx), ctx)
