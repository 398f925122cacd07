"""Fine-tuning objectives: the task loss (paper Eq. 3) plus a registered regularizer.

The penalties are pure functions with numeric tests; `build_objective(name, model, pretrained, **values)` turns a
registered regularizer and its plain keyword values into a callable `objective(x, y) -> (loss, logits, stats)`
that the training loop calls (the fine-tuning stage gets name and values from `[finetune.regularizer]`,
`builder_args()`). Register a new one with `@REGULARIZERS.register("name")` on a builder
`(model, pretrained, **values) -> objective` and select it with
`regularizer = {type = "custom", name = "name", params = {...}}` (params are its values).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from urrlkit.models import Classifier, Encoder
from urrlkit.registry import REGULARIZERS

# Stats stay tensors: converting them to floats every step would make the GPU wait (the loop reads them on log steps).
Stats = dict[str, float | torch.Tensor]
Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, Stats]]
# Choices of Eq. 4 the paper leaves open (see `similarity_regularization`, `FrozenTarget`).
SCALES = ("none", "batch")
FROZEN_BN = ("eval", "train", "match")


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Paper Eq. 3 with ℓ = cross-entropy: L_task = ℓ(y, g(f(x)))."""
    return F.cross_entropy(logits, labels)


def similarity_matrix(features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """S_ij = f(x_i)·f(x_j) over the images of one batch (paper Eq. 4). With `normalize`, features are
    L2-normalised first, so S holds cosine similarities (an option; the paper writes plain dot products)."""
    f = F.normalize(features, dim=1) if normalize else features
    return f @ f.T


def similarity_regularization(features: torch.Tensor, frozen_features: torch.Tensor, norm: str = "fro",
                              normalize: bool = False, scale: str = "none") -> torch.Tensor:
    """Paper Eq. 4: L_sim = ‖S − S*‖ with S from the encoder being tuned and S* from the frozen pretrained
    one. norm: 'fro' (Frobenius, the default), 'l1' (sum of absolute differences) or 'mse' (mean square).

    scale = "none" is the norm as written, which grows with the batch size B: S − S* has B² entries, so at a given
    per-entry difference ‖·‖_F and Σ|·| grow like B and B² (the paper is silent on this). scale = "batch" turns
    each into its per-entry value, the same at any B: ‖·‖_F / B (the root mean square of S − S*), Σ|·| / B² (the
    mean absolute difference); 'mse' is already a mean and is left as it is. "batch" is the default so that λ
    carries over between batch sizes: at the pretrained weights of benchmarks/sr_modes.py's ResNet-10 the
    penalty's gradient was about 33, 33 and 36 at B = 32, 64 and 128, against 1,000, 2,100 and 4,600 unscaled."""
    diff = similarity_matrix(features, normalize) - similarity_matrix(frozen_features.detach(), normalize)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; allowed: {', '.join(SCALES)}")
    b = diff.shape[0]
    if norm == "fro":
        # sqrt(Σ D²) with the square clamped away from 0: the value is exact for any realistic D, and the
        # gradient stays finite when S == S* (torch's norm has a 0/0 gradient there, and 0·NaN = NaN at λ = 0).
        value = diff.pow(2).sum().clamp_min(1e-12).sqrt()
        return value / b if scale == "batch" else value
    if norm == "l1":
        value = diff.abs().sum()
        return value / b**2 if scale == "batch" else value
    if norm == "mse":
        return diff.pow(2).mean()
    raise ValueError(f"unknown norm {norm!r}")


def l2sp_penalty(params: Iterable[torch.Tensor], start: Iterable[torch.Tensor], head_params: Iterable[torch.Tensor],
                 alpha: float, beta: float) -> torch.Tensor:
    """L2-SP (Li et al. 2018): Ω(w) = α/2·‖w_S − w_S⁰‖² over the pretrained weights + β/2·‖w_S̄‖² over the
    new head's. It replaces weight decay on those parameters (see `l2sp_parameters`)."""
    sp = sum(((w - w0.detach()) ** 2).sum() for w, w0 in zip(params, start, strict=True))
    new = sum((w ** 2).sum() for w in head_params)
    return alpha / 2 * sp + beta / 2 * new  # type: ignore[return-value]


def l2sp_parameters(model: nn.Module, which: str = "weights"
                    ) -> tuple[dict[str, nn.Parameter], dict[str, nn.Parameter]]:
    """The trainable parameters L2-SP regularizes: ({name inside the encoder: parameter} pulled toward the
    pretrained values, {name: parameter} of the new head pulled toward 0).

    which = "weights": conv and linear weight tensors only (ndim > 1), as Li et al.'s released code does by
    default (weight_decay_mode 1 regularizes the variables named `weights`; BN γ/β and biases get no penalty);
    "all": every parameter, BN γ/β and biases included (their mode 101). Names, not attributes: `model` may be
    wrapped (DDP prefixes "module.")."""
    if which not in ("weights", "all"):
        raise ValueError(f"unknown L2-SP parameter set {which!r}; allowed: weights, all")
    sp: dict[str, nn.Parameter] = {}
    head: dict[str, nn.Parameter] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad or (which == "weights" and p.ndim < 2):
            continue
        dotted = f".{name}"
        if ".encoder." in dotted:
            sp[dotted.split(".encoder.", 1)[1]] = p
        elif ".head." in dotted:
            head[name] = p
    return sp, head


def regularized_parameters(name: str, model: nn.Module, /, **values: object) -> list[nn.Parameter]:
    """Parameters whose L2 penalty the regularizer `name` (with its builder's keyword `values`) itself supplies, so
    the optimizer must not decay them too (L2-SP replaces weight decay on them, Li et al. 2018)."""
    if name == "l2sp":
        sp, head = l2sp_parameters(model, str(values.get("params", "weights")))
        return [*sp.values(), *head.values()]
    return []


def frozen_copy(encoder: Encoder) -> Encoder:
    """f*: the pretrained encoder, frozen, in eval mode (BN statistics fixed), never updated."""
    f_star = copy.deepcopy(encoder).eval()
    for p in f_star.parameters():
        p.requires_grad_(False)
    return f_star


class FrozenTarget:
    """f* of Eq. 4: a frozen copy of the pretrained encoder (no gradients; eval mode, so dropout and the like are
    off) whose BatchNorm layers normalise with

    - "eval": their running statistics, the pretrained ones: f* as it is evaluated (the default);
    - "train": the statistics of the batch being regularized, as the tuned encoder's layers do while it trains;
    - "match": whichever the tuned encoder's own layer of that name uses at each call: batch statistics while it
      trains, running statistics where it is in eval mode (the linear protocol's frozen encoder, a frozen BN).

    Running statistics are never updated (the copy's BN layers do not track them), so f* stays the pretrained
    encoder whatever the mode. The paper does not say which mode. With "eval", S ≠ S* before any update (the tuned
    encoder trains on batch statistics): 11–13% of ‖S*‖ on the ResNet-10 of benchmarks/sr_modes.py, and at λ = 1
    a first gradient 6·10³–4·10⁴ × the task loss's (which is small while the new head is near 0). "train" and
    "match" give S = S* exactly at the start. "eval" stays the default because it did better at what Eq. 4 is for
    (docs/finetune.md): after a short CIFAR-10 fine-tune, at a clean and corrupted accuracy no lower, the tuned
    encoder's test-time (eval-mode) similarities stayed about 2–3× nearer f*'s than with "match", whose penalty
    holds the batch-statistics similarities instead (about 0.14 vs 0.30–0.39 of ‖S*‖; 0.45 unregularized)."""

    def __init__(self, pretrained: Encoder, frozen_bn: str = "eval", tuned: nn.Module | None = None) -> None:
        if frozen_bn not in FROZEN_BN:
            raise ValueError(f"unknown frozen_bn {frozen_bn!r}; allowed: {', '.join(FROZEN_BN)}")
        self.encoder = frozen_copy(pretrained)
        self.mode = frozen_bn
        self.norms = {name: m for name, m in self.encoder.named_modules() if isinstance(m, _BatchNorm)}
        for m in self.norms.values():
            # Not tracked, a BN layer in train mode normalises with the batch's statistics and passes no buffer to
            # update; in eval mode it still normalises with the (kept) running statistics.
            m.track_running_stats = False
        self.partners: dict[str, nn.Module] = {}
        if frozen_bn == "match":
            if tuned is None:
                raise ValueError("frozen_bn = 'match' needs the model being tuned")
            self.partners = _encoder_norms(tuned)
            missing = sorted(set(self.norms) - set(self.partners))
            if missing:
                raise ValueError(f"frozen_bn = 'match': the tuned model has no BatchNorm layer {missing[0]!r}")

    def batch_statistics(self) -> dict[str, bool]:
        """For each of f*'s BN layers (by name), whether it normalises with batch statistics at this call."""
        if self.mode == "match":
            return {name: self.partners[name].training for name in self.norms}
        return dict.fromkeys(self.norms, self.mode == "train")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.encoder.eval()
        for name, use_batch in self.batch_statistics().items():
            self.norms[name].training = use_batch
        return self.encoder(x)


def _encoder_norms(model: nn.Module) -> dict[str, nn.Module]:
    """The BatchNorm layers of `model`'s encoder by their name inside it (`model` may be wrapped: DDP prefixes
    "module.")."""
    found: dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        dotted = f".{name}"
        if isinstance(m, _BatchNorm) and ".encoder." in dotted:
            found[dotted.split(".encoder.", 1)[1]] = m
    return found


@REGULARIZERS.register("none")
def build_none(model: Classifier, pretrained: Encoder) -> Objective:
    def objective(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        logits = model(x)
        return task_loss(logits, y), logits, {}

    return objective


@REGULARIZERS.register("sim")
def build_sim(model: Classifier, pretrained: Encoder, *, weight: float = 1.0, norm: str = "fro",
              normalize: bool = False, frozen_bn: str = "eval", scale: str = "batch") -> Objective:
    """Task loss + `weight` · Eq. 4 between the tuned encoder's and the frozen pretrained encoder's in-batch
    similarities (`norm`, features L2-normalised first when `normalize`, `scale` as `similarity_regularization`
    takes it), f* normalising its BatchNorm layers as `frozen_bn` says (`FrozenTarget`)."""
    f_star = FrozenTarget(pretrained, frozen_bn, model)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; allowed: {', '.join(SCALES)}")

    def objective(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        logits, feats = model(x, return_features=True)
        target = f_star(x)
        reg = similarity_regularization(feats.float(), target.float(), norm, normalize, scale)
        task = task_loss(logits, y)
        return task + weight * reg, logits, {"task": task.detach(), "sim": reg.detach()}

    return objective


@REGULARIZERS.register("l2sp")
def build_l2sp(model: Classifier, pretrained: Encoder, *, alpha: float = 0.01, beta: float = 0.01,
               params: str = "weights") -> Objective:
    """Task loss + L2-SP (Li et al. 2018): α/2 ‖w − w⁰‖² on the encoder's `params` ("weights" or "all") and
    β/2 ‖w‖² on the head's."""
    sp, head = l2sp_parameters(model, params)
    initial = dict(pretrained.named_parameters())
    start = [initial[n].detach().clone() for n in sp]
    tuned, head_params = list(sp.values()), list(head.values())

    def objective(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        logits = model(x)
        reg = l2sp_penalty(tuned, start, head_params, alpha, beta)
        task = task_loss(logits, y)
        return task + reg, logits, {"task": task.detach(), "l2sp": reg.detach()}

    return objective


@REGULARIZERS.register("adversarial")
def build_adversarial(model: Classifier, pretrained: Encoder, *, eps: float = 0.5, steps: int = 7,
                      step_size: float | None = None, random_start: bool = True) -> Objective:
    """PGD-L2 adversarial training (Madry et al.), the paper's reference point; the attack is the evaluation
    suite's. Adversarial examples are crafted with the model in eval mode so the attack's forward passes do not
    move BN statistics, then the model trains on them in train mode."""
    from accelerate.utils import extract_model_from_parallel

    from urrlkit.evaluate.attacks import pgd_l2

    # The attack differentiates w.r.t. inputs only; running it through a DDP wrapper would arm gradient
    # reduction hooks for a backward that never comes.
    bare = extract_model_from_parallel(model)

    def objective(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Stats]:
        was_training = bare.training
        bare.eval()
        x_adv = pgd_l2(bare, x.detach(), y, eps=eps, steps=steps, step_size=step_size,
                       random_start=random_start, use_best=True)  # robustness trains on --use-best 1
        bare.train(was_training)
        logits = model(x_adv.detach())
        return task_loss(logits, y), logits, {}

    return objective


def build_objective(name: str, model: Classifier, pretrained: Encoder, /, **values: object) -> Objective:
    """The objective of the registered regularizer `name`, built from its plain keyword `values`."""
    return REGULARIZERS.get(name)(model, pretrained, **values)

