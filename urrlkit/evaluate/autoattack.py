"""AutoAttack (Croce & Hein 2020) robust accuracy through the `pyautoattack` package (fra31/auto-attack,
autoattack.py `AutoAttack(model, norm, eps, version, seed).run_standard_evaluation(x, y, batch_size)`), the
evaluation RobustBench ranks models by.

Images are in [0, 1] and normalisation lives inside the model, so ε is in pixel units as RobustBench states it
(L2, ε = 0.5 for CIFAR-10). `pyautoattack` is an optional extra: `pip install 'urrlkit[autoattack]'`.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch import nn

from urrlkit.errors import UrrlError
from urrlkit.evaluate.inputs import model_device, predict

EXTRA_HINT = "pip install 'urrlkit[autoattack]'"


def _autoattack_class() -> Any:
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise UrrlError(f"the autoattack suite needs the pyautoattack package: {EXTRA_HINT}") from None
    return AutoAttack


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device) -> int:
    n = 0
    for i in range(0, x.shape[0], batch_size):
        pred, _ = predict(model, x[i : i + batch_size].to(device))
        n += int((pred == y[i : i + batch_size].to(device)).sum())
    return n


def autoattack_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.5,
    norm: str = "L2",
    version: str = "standard",
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Clean and AutoAttack robust top-1 (%) with the settings used. images uint8 or float in [0, 1].

    Robust top-1 is the model's accuracy on AutoAttack's returned images (the original image wherever no attack
    of the ensemble succeeded). AutoAttack reseeds torch's global generator with `seed` before each attack; that
    happens inside `torch.random.fork_rng`, so the caller's random state is untouched."""
    AutoAttack = _autoattack_class()
    device = torch.device(device) if device is not None else model_device(model)
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    y = labels.long()
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            adversary = AutoAttack(model, norm=norm, eps=eps, version=version, device=device, seed=seed)
            classes = getattr(getattr(model, "head", None), "out_features", None)
            if classes is not None and classes - 1 < 9:
                # The standard version targets the 9 runner-up classes; with fewer classes there are fewer targets.
                adversary.apgd_targeted.n_target_classes = adversary.fab.n_target_classes = max(classes - 1, 1)
            with contextlib.redirect_stdout(None):
                x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size)
        clean = _correct(model, x, y, batch_size, device)
        robust = _correct(model, x_adv.cpu(), y, batch_size, device)
    finally:
        model.train(was_training)
    n = int(x.shape[0])
    return {
        "robust_top1": 100.0 * robust / max(n, 1),
        "clean_top1": 100.0 * clean / max(n, 1),
        "eps": eps,
        "norm": norm,
        "version": version,
        "n": n,
        "seed": seed,
        "seconds": time.perf_counter() - t0,
    }


__all__ = ["autoattack_accuracy"]
