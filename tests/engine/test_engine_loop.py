"""engine/loop.py `fit`: the epoch-end hook runs once per finished epoch on every process, before that epoch's
checkpoint (what it changes is saved, a resume does not repeat it), and its numbers are logged under the stage's
title; the loop's should_log / should_checkpoint / should_stop on a step grid."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from urrlkit.engine.checkpoint import Checkpointer, TrainState
from urrlkit.engine.logging import MetricLogger
from urrlkit.engine.loop import LoopSpec, fit, make_accelerator, should_checkpoint, should_log, should_stop


def run(run_dir: Path, calls: list[int], counter: torch.Tensor, stop_after: int | None = None,
        resume: bool = False, checkpoint_every: int = 0, with_hook: bool = True) -> torch.nn.Module:
    """3 epochs of 3 steps (24 samples, batches of 8) of a linear model; the hook (unless not `with_hook`)
    counts into `counter`."""
    acc = make_accelerator(run_dir, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    data = TensorDataset(torch.arange(96, dtype=torch.float32).reshape(24, 4) / 96, torch.ones(24, 1))
    model, optimizer, loader = acc.prepare(model, optimizer, DataLoader(data, batch_size=8, shuffle=True))

    def step(batch: list[torch.Tensor], progress: object = None) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch
        return (model(x) - y).square().mean(), {}

    def hook(epoch: int) -> dict[str, float]:
        calls.append(epoch)
        counter.add_(1)
        return {"probe": 10.0 * epoch + 0.5}

    spec = LoopSpec(epochs=3, lr=0.1, schedule="constant", log_every=100, title="stage-x",
                    checkpoint_every=checkpoint_every, stop_after=stop_after)
    logger = MetricLogger(acc, run_dir / "metrics.jsonl", False)
    fit(acc, model, optimizer, loader, step, spec, Checkpointer(acc, run_dir / "checkpoints"), logger, [],
        resume=resume, extra_state={"counter": counter}, on_epoch_end=hook if with_hook else None)
    return model


def test_the_hook_runs_after_each_epoch_and_its_numbers_are_logged(tmp_path: Path) -> None:
    calls: list[int] = []
    run(tmp_path, calls, torch.zeros((), dtype=torch.long))
    assert calls == [0, 1, 2]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    probes = [(r["step"], r["stage"], r["epoch"], r["probe"]) for r in records if "probe" in r]
    assert probes == [(3, "stage-x", 0, 0.5), (6, "stage-x", 1, 10.5), (9, "stage-x", 2, 20.5)]


def test_what_the_hook_changes_is_checkpointed_and_a_resume_does_not_repeat_it(tmp_path: Path) -> None:
    calls: list[int] = []
    counter = torch.zeros((), dtype=torch.long)
    # Stopped one step into epoch 1: the last checkpoint is epoch 0's end, written after the hook ran.
    run(tmp_path, calls, counter, stop_after=4)
    assert calls == [0] and int(counter) == 1
    resumed = torch.full((), 99, dtype=torch.long)
    run(tmp_path, calls, resumed, resume=True)
    assert calls == [0, 1, 2] and int(resumed) == 3  # restored to 1 (the hook's change was saved), then 2 more


def test_a_stop_on_an_epoch_end_runs_the_hook_once(tmp_path: Path) -> None:
    calls: list[int] = []
    run(tmp_path, calls, torch.zeros((), dtype=torch.long), stop_after=3, checkpoint_every=3)
    run(tmp_path, calls, torch.zeros((), dtype=torch.long), resume=True, checkpoint_every=3)
    assert calls == [0, 1, 2]


def test_without_a_hook_the_weights_are_the_same(tmp_path: Path) -> None:
    """The hook only observes here: the trained weights equal those of a run without one."""
    with_hook = run(tmp_path / "a", [], torch.zeros((), dtype=torch.long))
    model = run(tmp_path / "b", [], torch.zeros((), dtype=torch.long), with_hook=False)
    for a, b in zip(with_hook.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_loop_predicates() -> None:
    """Which global steps log, checkpoint and stop: 3 steps per epoch, log every 2, checkpoint every 4, stop after
    7 (the counters as the loop holds them after a step: an epoch's end has already moved to the next epoch)."""
    spec = LoopSpec(epochs=3, lr=0.1, log_every=2, checkpoint_every=4, stop_after=7)
    logged, saved, stopped = [], [], []
    state = TrainState()
    for _ in range(9):
        state.step_in_epoch += 1
        state.global_step += 1
        if should_log(state, spec, 3):
            logged.append(state.global_step)
        if state.step_in_epoch == 3:
            state.epoch, state.step_in_epoch = state.epoch + 1, 0
        if should_checkpoint(state, spec):
            saved.append(state.global_step)
        if should_stop(state, spec):
            stopped.append(state.global_step)
    assert logged == [2, 3, 4, 6, 8, 9]
    assert saved == [3, 4, 6, 8, 9]
    assert stopped == [7, 8, 9]
    assert not should_stop(state, LoopSpec(epochs=3, lr=0.1))
