"""Group samples by the op they drew, with one host synchronisation per call instead of one per op.

Every batched family works the same way: each sample draws an op id, and each op runs once on the samples
that drew it. ``(ids == k).nonzero()`` per op makes the host wait for the device once per op (≈ 40 times per
AugMix call), which on a GPU drains the launch queue each time. Here all rows of ids are sorted at once and
the group sizes come back in a single ``tolist()``; each group's indices are then slices of one device tensor.
Within a group the indices are ascending, exactly as ``nonzero`` returns them, so the results are bit-identical.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def group_rows(ids: Tensor, n: int) -> list[list[tuple[int, Tensor]]]:
    """For ids (R, N) with values in [0, n] (n means "no op"), per row the (k, ascending indices) of every
    non-empty group k < n."""
    rows, cols = ids.shape
    keys = (ids + torch.arange(rows, device=ids.device).unsqueeze(1) * (n + 1)).reshape(-1)
    order = torch.argsort(keys, stable=True)
    # scatter_add, not bincount: CUDA bincount reads max() back to the host first (a second sync).
    zeros = torch.zeros(rows * (n + 1), dtype=torch.long, device=ids.device)
    counts: list[int] = zeros.scatter_add_(0, keys, torch.ones_like(keys)).tolist()  # the one host sync
    col = order % cols
    out: list[list[tuple[int, Tensor]]] = []
    start = 0
    for r in range(rows):
        groups = []
        for k in range(n + 1):
            c = counts[r * (n + 1) + k]
            if c and k < n:
                groups.append((k, col[start:start + c]))
            start += c
        out.append(groups)
    return out


def group(ids: Tensor, n: int) -> list[tuple[int, Tensor]]:
    """``group_rows`` for one row: the (k, ascending indices) of every non-empty group k < n of ids (N,)."""
    return group_rows(ids.unsqueeze(0), n)[0]


def copy_rows_(out: Tensor, idx: Tensor, src: Tensor) -> Tensor:
    """``out.index_copy_(0, idx, src)``, moving each row in 16-byte words on the CPU.

    The CPU kernel of index_copy_ moves one element at a time: for float32 images it runs at a third of the
    speed of a plain copy. Viewed as complex128 (bytes unchanged, so the result is identical) each element
    carries four floats, several times faster (timings: docs/benchmarks.md).
    Other devices (MPS has no complex128), and rows that do not split into 16-byte words, take the plain path.
    """
    wide = torch.complex128
    ratio = wide.itemsize // out.element_size() if out.element_size() < wide.itemsize else 0
    row = math.prod(out.shape[1:])
    if (out.device.type == "cpu" and ratio and out.dtype == src.dtype and out.is_contiguous()
            and src.is_contiguous() and row % ratio == 0 and out.storage_offset() % ratio == 0
            and src.storage_offset() % ratio == 0):
        out.view(out.shape[0], row).view(wide).index_copy_(0, idx, src.reshape(src.shape[0], row).view(wide))
        return out
    return out.index_copy_(0, idx, src)


def true_indices(masks: list[Tensor]) -> list[Tensor]:
    """Ascending indices of the True entries of each (N,) boolean mask — ``nonzero`` for all, one sync."""
    groups = group_rows(torch.stack(masks).logical_not().long(), 1)
    empty = torch.empty(0, dtype=torch.long, device=masks[0].device)
    return [g[0][1] if g else empty for g in groups]
