"""glibc malloc and OpenMP settings for CPU training (applied by the `urrl` command, never on import).

Batched augmentation and training allocate and free tensors of 0.1–30 MB every step. With glibc's defaults
such blocks are mmap'd and unmapped, or trimmed back to the OS, on every free, so the next allocation of the
same size page-faults its memory in again; on this project's 2-core VM that made whole ops several times
slower than their arithmetic. Keeping freed memory in the heap removes the faults, and the URRL sampler runs
faster (A/B timings: docs/benchmarks.md). The price is that the process
keeps up to `trim_threshold` of freed memory instead of returning it. Opt out with URRL_MALLOC_TUNING=0.
"""

from __future__ import annotations

import ctypes
import math
import os
import platform
from collections.abc import MutableMapping

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc <malloc.h>
MiB = 1 << 20


def tune_glibc_malloc(mmap_threshold: int = 32 * MiB, trim_threshold: int = 1024 * MiB,
                      top_pad: int = 64 * MiB) -> bool:
    """Raise glibc's mmap and trim thresholds for this process (and the workers it forks). Returns True when
    applied; False on other C libraries, when mallopt refuses, or when URRL_MALLOC_TUNING=0."""
    if os.environ.get("URRL_MALLOC_TUNING", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # 32 MiB is glibc's ceiling for the mmap threshold on 64-bit; larger blocks stay mmap'd.
    settings = ((M_MMAP_THRESHOLD, mmap_threshold), (M_TRIM_THRESHOLD, trim_threshold), (M_TOP_PAD, top_pad))
    if any(not 0 <= v < 2**31 for _, v in settings):
        raise ValueError(f"malloc settings must fit a C int, got {[v for _, v in settings]}")
    return all(libc.mallopt(option, value) == 1 for option, value in settings)


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, further capped by a cgroup v2 CPU quota (a container
    limited to 2 CPUs on a 64-core host still sees 64 in its affinity mask)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def default_thread_env(env: MutableMapping[str, str]) -> dict[str, str]:
    """OpenMP defaults for a shared machine, set only where the user has not chosen (returns what was set).

    OMP_WAIT_POLICY=PASSIVE: with the default (active) policy idle OpenMP threads spin for a while after every
    parallel region; on a loaded 2-core machine those spinning threads took the cores other processes (and
    the DataLoader workers) needed, and the quickstart took 30 minutes instead of about one. Passive threads
    sleep at once. OMP_NUM_THREADS: the CPUs actually available (affinity and cgroup quota), not the host's.
    Must run before torch is imported: OpenMP reads both once, when it loads. Opt out with
    URRL_THREAD_TUNING=0, or by setting either variable yourself (an explicit value always wins)."""
    if env.get("URRL_THREAD_TUNING", "1") == "0":
        return {}
    chosen = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(available_cpus())}
    applied = {k: v for k, v in chosen.items() if k not in env}
    env.update(applied)
    return applied
