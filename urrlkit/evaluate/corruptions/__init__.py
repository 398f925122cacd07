"""Common corruptions (Hendrycks & Dietterich 2019): batched ops, the official "-C" layouts and generation.

`corrupt(images, name, severity, seed)` corrupts a uint8 NCHW batch and returns uint8, quantised as the
reference saves its sets (truncation). The 19 ops are registered in `urrlkit.registry.CORRUPTIONS`, so users
can register more (signature: `fn(x: float NCHW in [0,1], severity: int, rng: Rand) -> float NCHW`).
"""

from __future__ import annotations

import hashlib

import torch

from urrlkit.errors import UrrlError
from urrlkit.evaluate.corruptions.ops import OPS, Rand
from urrlkit.evaluate.corruptions.params import ALL, COMMON, EXTRA, PARAMS, size_class
from urrlkit.registry import CORRUPTIONS

for _name, _fn in OPS.items():
    if _name not in CORRUPTIONS:
        CORRUPTIONS.add(_name, _fn)

CHUNK = 256


def corruption_seed(seed: int, name: str, severity: int, index: int) -> int:
    """A stable seed for (seed, corruption, severity, index of the batch's first image)."""
    blob = f"{seed}:{name}:{severity}:{index}".encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") & ((1 << 63) - 1)


def check_names(names: list[str] | None, source: str = "corruptions") -> list[str]:
    if names is None:
        return list(COMMON)
    for n in names:
        if n not in CORRUPTIONS:
            raise UrrlError(f"{source}: {CORRUPTIONS.unknown_message(n)}")
    return list(names)


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0, start: int = 0) -> torch.Tensor:
    """Corrupt uint8 (N, 3, H, W) images; deterministic for (seed, name, severity) and the images' positions
    `start + i` (processed in fixed chunks of 256, so the result does not depend on the caller's batching when
    `start` is a multiple of 256)."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise UrrlError(
            f"corrupt: expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}"
        )
    if not 1 <= severity <= 5:
        raise UrrlError(f"corrupt: severity must be in 1..5, got {severity}")
    fn = CORRUPTIONS.get(name)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    outs = []
    for i in range(0, images.shape[0], CHUNK):
        x = images[i : i + CHUNK].float() / 255
        y = fn(x, severity, Rand.from_seed(corruption_seed(seed, name, severity, start + i)))
        outs.append(torch.floor(y.float().clamp(0, 1) * 255 + 1e-3).to(torch.uint8))
    return torch.cat(outs) if outs else images.clone()


__all__ = ["ALL", "COMMON", "EXTRA", "PARAMS", "Rand", "check_names", "corrupt", "size_class"]
