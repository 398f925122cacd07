"""Metrics as JSON lines + Accelerate trackers, and progress: a Rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False)


class MetricLogger:
    """Appends one JSON object per record to `metrics.jsonl` (main process) and forwards to trackers."""

    def __init__(self, acc: Accelerator, path: Path, trackers: bool) -> None:
        self.acc = acc
        self.path = path
        self.trackers = trackers

    def log(self, record: dict[str, Any], step: int) -> None:
        if not self.acc.is_main_process:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, "time": round(time.time(), 3), **record}) + "\n")
        if self.trackers:
            self.acc.log({k: v for k, v in record.items() if isinstance(v, int | float)}, step=step)


class ProgressReporter:
    """Rich progress on a TTY (epoch, step, loss, lr, throughput); every `every` steps a plain line otherwise
    (Rich draws no frames off a terminal, so logs and CI still see progress)."""

    def __init__(self, acc: Accelerator, title: str, total_steps: int, every: int) -> None:
        self.acc = acc
        self.every = every
        self.title = title
        self.total = total_steps
        self.tty = sys.stderr.isatty() and acc.is_main_process
        self.progress: Progress | None = None
        self.task = TaskID(0)  # the bar's one task, once __enter__ adds it
        self.t0 = time.perf_counter()

    def __enter__(self) -> ProgressReporter:
        if self.tty:
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console)
            self.progress.start()
            self.task = self.progress.add_task(self.title, total=self.total, info="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, step: int, epoch: int, info: dict[str, float] | None, done: int = 1) -> None:
        """Advance to `step`; `info` (None between log steps: the bar keeps its last numbers) is shown."""
        if info is None:
            if self.progress is not None:
                self.progress.update(self.task, completed=step)
            return
        text = "  ".join(f"{k} {v:.4g}" for k, v in info.items())
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=f"epoch {epoch}  {text}")
        elif self.acc.is_main_process and (step % self.every == 0 or step == self.total):
            console.print(f"{self.title} step {step}/{self.total} epoch {epoch} {text}", markup=False)


def say(acc: Accelerator, message: str) -> None:
    if acc.is_main_process:
        console.print(message, markup=False)
