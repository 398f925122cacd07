"""The `urrl` command's glibc malloc settings (urrlkit/engine/allocator.py)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from urrlkit.engine.allocator import tune_glibc_malloc

# In a fresh interpreter: is a 20 MiB block mmap'd (hblks grows) before and after tuning?
PROBE = """
import ctypes, sys
from urrlkit.engine.allocator import tune_glibc_malloc
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def mmapped() -> bool:
    before = libc.mallinfo2().hblks
    p = libc.malloc(20 << 20)
    grew = libc.mallinfo2().hblks > before
    libc.free(p)
    return grew
first = mmapped()
applied = tune_glibc_malloc()
print(first, applied, mmapped())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_large_blocks_stay_in_the_heap_after_tuning() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "False"]


def test_opt_out_and_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="C int"):
        tune_glibc_malloc(trim_threshold=1 << 40)
    monkeypatch.setenv("URRL_MALLOC_TUNING", "0")
    assert tune_glibc_malloc() is False
