"""Overlap of input preparation with training: batch t+1 is moved to the device and prepared (decoded, cut,
augmented) on a side CUDA stream while the step of batch t runs on the default stream.

Correctness on CUDA: the side stream waits for the consumer's stream before it prepares a batch (the batch
was moved to the device there, and step t − 1 is queued before it, so batch t + 1 still overlaps step t); the
consumer's stream waits for the side stream (``wait_stream``) before it receives a
batch, and every tensor of the prepared batch is marked as used on the consumer's stream (``record_stream``), so
the caching allocator does not hand its memory to the side stream's next batch while the step still reads it.
A ``prepare`` that draws random numbers must not depend on the order of its calls relative to the steps (the
device-decoding path seeds one generator per batch; augment/device_crops.py). On the CPU it is a pass-through:
``prepare`` runs on each batch as it is taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

_END = object()


def _tensors(x: Any) -> Iterator[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, list | tuple):
        for y in x:
            yield from _tensors(y)
    elif isinstance(x, dict):
        for y in x.values():
            yield from _tensors(y)


class Prefetcher:
    """Iterates ``batches`` yielding ``prepare(batch)``, one batch ahead on a side stream on CUDA."""

    def __init__(self, batches: Iterable, prepare: Callable[[Any], Any], device: torch.device | str) -> None:
        self.batches = batches
        self.prepare = prepare
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        if self.device.type != "cuda":
            for batch in self.batches:
                yield self.prepare(batch)
            return
        side = torch.cuda.Stream(self.device)
        it = iter(self.batches)

        def ahead() -> Any:
            batch = next(it, _END)
            if batch is _END:
                return _END
            # The batch reached the device on the consumer's stream (e.g. Accelerate's loader): the side stream waits
            # for that copy, and its memory is not reused while the side stream still reads it.
            side.wait_stream(torch.cuda.current_stream(self.device))
            for t in _tensors(batch):
                if t.is_cuda:
                    t.record_stream(side)
            with torch.cuda.stream(side):
                return self.prepare(batch)

        nxt = ahead()
        while nxt is not _END:
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(side)
            for t in _tensors(nxt):
                if t.is_cuda:
                    t.record_stream(main)
            cur, nxt = nxt, ahead()  # batch t+1 is queued on the side stream before step t is
            yield cur
