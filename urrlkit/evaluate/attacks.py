"""L2 adversarial attacks in [0, 1] pixel space (normalisation lives inside the model).

`pgd_l2` follows MadryLab robustness' L2Step (robustness/attack_steps.py): step = ∇/‖∇‖₂ · step size, projection onto
the ε-ball (renorm) and clamp to [0, 1]; optional random start on the ε-sphere; `use_best` keeps, per image,
the iterate with the highest loss.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from urrlkit.errors import UrrlError
from urrlkit.evaluate.inputs import model_device, predict


def _norms(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.ndim - 1)))


def project_l2(x: torch.Tensor, orig: torch.Tensor, eps: float) -> torch.Tensor:
    """Project x onto {‖x − orig‖₂ ≤ eps} ∩ [0, 1]^d (renorm, then clamp; clamping never leaves the ball)."""
    diff = x - orig
    factor = torch.clamp(eps / (_norms(diff) + 1e-12), max=1.0)
    return torch.clamp(orig + diff * factor, 0.0, 1.0)


def pgd_l2(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.5,
    steps: int = 20,
    step_size: float | None = None,
    random_start: bool = False,
    use_best: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Untargeted L2 PGD on cross-entropy. images (N, C, H, W) in [0, 1]; returns adversarial images with
    ‖x_adv − x‖₂ ≤ eps per image and values in [0, 1]. step_size defaults to 2.5·eps/steps. The model's mode
    (train/eval) is left as it is: call `model.eval()` first for evaluation."""
    if eps < 0 or steps < 1:
        raise UrrlError(f"pgd_l2: need eps ≥ 0 and steps ≥ 1, got eps={eps}, steps={steps}")
    orig = images.detach().float()
    if eps == 0:
        return orig.clone()
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    x = orig.clone()
    if random_start:
        noise = torch.randn(orig.shape, generator=generator, dtype=orig.dtype).to(orig.device)
        x = torch.clamp(orig + eps * noise / (_norms(noise) + 1e-10), 0.0, 1.0)
    best_x = x.clone()
    best_loss = torch.full((orig.shape[0],), -float("inf"), device=orig.device)
    for i in range(steps + (1 if use_best else 0)):
        x.requires_grad_(True)
        logits = model(x)
        losses = F.cross_entropy(logits, labels, reduction="none")
        if use_best:
            with torch.no_grad():
                better = losses.detach() > best_loss
                best_loss = torch.where(better, losses.detach(), best_loss)
                best_x[better] = x.detach()[better]
            if i == steps:
                break
        (grad,) = torch.autograd.grad(losses.sum(), [x])
        with torch.no_grad():
            x = x.detach() + alpha * grad / (_norms(grad) + 1e-10)
            x = project_l2(x, orig, eps)
    return (best_x if use_best else x).detach()


def robust_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 0.5,
    steps: int = 20,
    step_size: float | None = None,
    random_start: bool = False,
    use_best: bool = True,
    batch_size: int = 256,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Clean and PGD-L2 robust top-1 (%) with the settings used. images uint8 or float in [0, 1]."""
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    clean = robust = 0
    t0 = time.perf_counter()
    try:
        for i in range(0, images.shape[0], batch_size):
            xb = images[i : i + batch_size]
            xb = (xb.float() / 255 if xb.dtype == torch.uint8 else xb.float()).to(device)
            yb = labels[i : i + batch_size].to(device)
            clean += int((predict(model, xb)[0] == yb).sum())
            adv = pgd_l2(model, xb, yb, eps, steps, step_size, random_start, use_best, gen)
            robust += int((predict(model, adv)[0] == yb).sum())
    finally:
        model.train(was_training)
    n = int(images.shape[0])
    return {
        "robust_top1": 100.0 * robust / max(n, 1),
        "clean_top1": 100.0 * clean / max(n, 1),
        "eps": eps,
        "steps": steps,
        "step_size": 2.5 * eps / steps if step_size is None else step_size,
        "random_start": random_start,
        "use_best": use_best,
        "norm": "L2",
        "attack": "pgd",
        "n": n,
        "seconds": time.perf_counter() - t0,
    }


__all__ = ["pgd_l2", "project_l2", "robust_accuracy"]
