"""engine/prefetch.py: the same batches, prepared, in the same order, with or without the side stream."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from urrlkit.engine.prefetch import Prefetcher

GPU = os.environ.get("URRL_TEST_GPU") == "1" and torch.cuda.is_available()


def prepare_on(device: str):
    def prepare(batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, i = batch
        x = x.to(device, non_blocking=True)
        g = torch.Generator(device).manual_seed(int(i[0]))  # seeded per batch: independent of when it runs
        return (x * 2 + torch.rand(x.shape, generator=g, device=device)).sum(1), i.to(device)
    return prepare


def loader() -> DataLoader:
    ds = TensorDataset(torch.arange(600, dtype=torch.float32).view(100, 6), torch.arange(100))
    return DataLoader(ds, batch_size=8)


def test_cpu_pass_through_keeps_results_and_order() -> None:
    plain = [prepare_on("cpu")(b) for b in loader()]
    fetched = list(Prefetcher(loader(), prepare_on("cpu"), "cpu"))
    assert len(Prefetcher(loader(), prepare_on("cpu"), "cpu")) == len(plain) == 13
    for (a, i), (b, j) in zip(plain, fetched, strict=True):
        assert torch.equal(a, b) and torch.equal(i, j)


def test_empty_and_single() -> None:
    assert list(Prefetcher([], lambda b: b, "cpu")) == []
    assert list(Prefetcher([5], lambda b: b + 1, "cpu")) == [6]


@pytest.mark.skipif(not GPU, reason="URRL_TEST_GPU=1 and CUDA needed")
def test_side_stream_gives_the_same_batches_while_the_step_is_slow() -> None:
    plain = [tuple(t.cpu() for t in prepare_on("cuda")(b)) for b in loader()]
    out = []
    for a, i in Prefetcher(loader(), prepare_on("cuda"), "cuda"):
        torch.cuda._sleep(2_000_000)  # a long step on the default stream: the next batch is prepared meanwhile
        big = torch.empty(1 << 20, device="cuda").fill_(-1)  # allocator reuse would overwrite a freed batch
        out.append((a.cpu(), i.cpu()))
        del big
    for (a, i), (b, j) in zip(plain, out, strict=True):
        assert torch.equal(a, b) and torch.equal(i, j)
