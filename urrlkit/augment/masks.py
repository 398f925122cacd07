"""Masks as numbers: comparisons that write 0/1 straight into a float tensor.

Per-sample ops select pixels with masks (solarize's threshold, a warp's inside-the-image test, the hue's
max-channel branch). On the CPU a comparison that writes ``bool``, and arithmetic that mixes a ``bool`` mask into
float, take slow paths, several times slower than ``torch.ge(x, t, out=<float32>)`` and a float mask
(timings: docs/benchmarks.md). The values are the same; only the kernel differs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Compare = Callable[..., Tensor]


def indicator(compare: Compare, a: Tensor, b: Tensor | float, dtype: torch.dtype | None = None) -> Tensor:
    """``compare(a, b).to(dtype)`` — 1 where the comparison holds, else 0 — written by the comparison itself.

    ``compare`` is a torch comparison with an ``out`` argument (``torch.ge``, ``torch.lt``, ``torch.eq``, …);
    ``dtype`` defaults to ``a``'s; ``b`` broadcasts against ``a``.
    """
    shape = torch.broadcast_shapes(a.shape, b.shape) if isinstance(b, Tensor) else a.shape
    out = torch.empty(shape, dtype=a.dtype if dtype is None else dtype, device=a.device)
    return compare(a, b, out=out)


def within(v: Tensor, lo: float, hi: float, dtype: torch.dtype | None = None) -> Tensor:
    """1 where lo ≤ v < hi, else 0, in ``dtype`` (default v's)."""
    return indicator(torch.ge, v, lo, dtype).mul_(indicator(torch.lt, v, hi, dtype))


def mask_dtype(x: Tensor) -> torch.dtype:
    """The dtype of a mask that multiplies x: x's own if floating (fast), else bool (an integer image times a
    float mask would not fit back into x)."""
    return x.dtype if x.is_floating_point() else torch.bool
