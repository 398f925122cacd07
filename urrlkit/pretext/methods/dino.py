"""DINO (Caron et al. 2021): self-distillation with no labels. The student (the encoder and a DINOHead) matches,
on every crop, the teacher's centred and sharpened output of the other global crops; the teacher (an EMA copy of
the student) sees the global crops only.

As facebookresearch/dino (main_dino.py, vision_transformer.py DINOHead, utils.py):
- multi-crop (DataAugmentationDINO): 2 global crops at data.image_size, scale global_crops_scale, the first with
  blur p 1.0, the second with blur p 0.1 and solarization p 0.2; `local_crops` local crops of `local_size` px,
  scale local_crops_scale, blur p 0.5. Here every crop, the local ones included, draws its family by paper Eq. 2;
  the blur / solarization probabilities are those of the `byol` family (DINO's colour stage is BYOL's), and the
  view group's crop scale applies whichever family a crop draws;
- the backbone runs once per run of same-sized crops and the head once on all of them (utils.py
  MultiCropWrapper), so BN statistics span the same images as the reference's;
- DINOLoss: student temperature 0.1, teacher temperature per epoch, linear from warmup_teacher_temp to
  teacher_temp over warmup_teacher_temp_epochs; the centre c ← 0.9·c + 0.1·mean of the teacher outputs, summed
  over all processes, after the loss (which uses the centre before the update);
- the teacher's momentum per iteration by a cosine from momentum_teacher to 1, applied after the optimizer step
  (after_step);
- freeze_last_layer: the head's last layer takes no step during the first epochs (its gradients dropped right
  before the optimizer step, pretext/freeze.py StepFreeze);
- defaults: main_dino.py's argparse defaults (teacher temperature 0.04 without warm-up, out_dim 65536,
  norm_last_layer true, 8 local crops); the README's runs set the rest (recipes/methods/dino_*.toml).

Choices and deviations, named:
- local_size None = urrlkit/views.py local_crop_size(data.image_size) = round(96 · data.image_size / 224):
  DINO's 96 px at 224, in proportion at other sizes (14 px at 32); DINO fixes 224 / 96.
- The health monitor reads the student's L2-normalised bottleneck (the head's 256-d output before its last layer)
  of the two global crops: the head's representation of every image, whose collapse (one vector for all images)
  is the collapse of the outputs; the 65536-d outputs themselves would not fit its ring buffer. The step also
  logs DINO's own collapse signals (DINO §5.3, Fig. 7): teacher_entropy, the entropy of the teacher's targets
  (→ 0: one dimension dominates; → ln out_dim: uniform), and kl = loss − teacher_entropy, the mean KL between
  targets and student (→ 0 in either collapse).
- chance_loss = ln out_dim, the loss of uniform outputs (DINO's uniform collapse).
- The teacher copy runs without stochastic depth (its DropPath probabilities set to 0: main_dino.py builds the
  teacher without drop_path_rate). Resizes are bilinear (DINO: bicubic; augment/multiview.py GroupCrop).
- BN statistics are per process (the reference converts BN to SyncBatchNorm when the model has any).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field, PrivateAttr, field_validator

from urrlkit.config.pretext import MethodSettings
from urrlkit.config.sections import _error_at
from urrlkit.views import GLOBAL_SCALE, LOCAL_CROPS, LOCAL_SCALE, ViewGroup, local_crop_size

if TYPE_CHECKING:
    from torch import Tensor, nn

    from urrlkit.engine.progress import Progress, StepOutput
    from urrlkit.models import Encoder
    from urrlkit.pretext.model import BuildContext, PretextModel

# main_dino.py DataAugmentationDINO: (blur p, solarization p) of global crop 1, global crop 2, the local crops.
GLOBAL_BLUR_SOLARIZE = ((1.0, 0.0), (0.1, 0.2))
LOCAL_BLUR_SOLARIZE = (0.5, 0.0)
BYOL_FAMILY = "byol"
GLOBAL_CROPS = 2  # main_dino.py: teacher(images[:2]), DINOLoss chunk(2)


def same_size_runs(views: list[Tensor]) -> list[tuple[int, int]]:
    """(start, end) of each run of consecutive views of one width (utils.py MultiCropWrapper's
    unique_consecutive over the last dimension)."""
    runs, start = [], 0
    for i in range(1, len(views) + 1):
        if i == len(views) or views[i].shape[-1] != views[start].shape[-1]:
            runs.append((start, i))
            start = i
    return runs


def multi_crop_features(net: nn.Module, views: list[Tensor]) -> Tensor:
    """The backbone's features of all views, concatenated in view order, one forward per run of same-sized views."""
    import torch

    return torch.cat([net(torch.cat(views[a:b])) for a, b in same_size_runs(views)])


def without_stochastic_depth(module: nn.Module) -> nn.Module:
    """`module` with every DropPath (timm: a `drop_prob` attribute) off, in place."""
    for m in module.modules():
        if isinstance(getattr(m, "drop_prob", None), float):
            setattr(m, "drop_prob", 0.0)  # noqa: B010 (nn.Module's typed __setattr__ refuses a float)
    return module


class DINO(MethodSettings):
    """DINO: views are the 2 global crops, then the local crops (view_groups order)."""

    method: Literal["dino"] = "dino"
    out_dim: int = Field(65536, ge=1, le=262144, description="K, the head's output size (--out_dim)")
    hidden_dim: int = Field(2048, ge=1, le=65536, description="DINOHead MLP width (hidden_dim)")
    bottleneck_dim: int = Field(256, ge=1, le=65536, description="DINOHead bottleneck (bottleneck_dim)")
    head_layers: int = Field(3, ge=1, le=8, description="DINOHead Linear layers before the bottleneck (nlayers)")
    use_bn_in_head: bool = Field(False, description="BN in the head's MLP (--use_bn_in_head)")
    norm_last_layer: bool = Field(True, description="weight-normalised last layer with g fixed at 1 "
                                  "(--norm_last_layer; the README's ViT-S runs set false)")
    momentum_teacher: float = Field(0.996, ge=0, le=1, description="teacher EMA momentum at the start, cosine to 1 "
                                    "per iteration (--momentum_teacher)")
    student_temp: float = Field(0.1, gt=0, description="student temperature (DINOLoss student_temp)")
    teacher_temp: float = Field(0.04, gt=0, description="teacher temperature after the warm-up (--teacher_temp)")
    warmup_teacher_temp: float = Field(0.04, gt=0, description="teacher temperature at epoch 0 "
                                       "(--warmup_teacher_temp)")
    warmup_teacher_temp_epochs: int = Field(0, ge=0, description="epochs of the linear teacher-temperature warm-up "
                                            "(--warmup_teacher_temp_epochs)")
    center_momentum: float = Field(0.9, ge=0, le=1, description="EMA momentum of the centre (DINOLoss)")
    freeze_last_layer: int = Field(1, ge=0, description="epochs during which the head's last layer takes no step "
                                   "(--freeze_last_layer)")
    global_crops_scale: tuple[float, float] = Field(GLOBAL_SCALE, description="RandomResizedCrop area range of the "
                                                    "2 global crops (--global_crops_scale)")
    local_crops: int = Field(LOCAL_CROPS, ge=0, le=64, description="local crops per image (--local_crops_number); "
                             "0 = none")
    local_crops_scale: tuple[float, float] = Field(LOCAL_SCALE, description="area range of the local crops "
                                                   "(--local_crops_scale)")
    local_size: int | None = Field(None, ge=1, le=4096, description="local crop side in px; none = round(96 × "
                                   "data.image_size / 224), DINO's 96 at 224 in proportion")

    representation_family = BYOL_FAMILY
    summary = "DINO (self-distillation: student vs centred, sharpened EMA teacher, multi-crop)"

    # data.image_size, recorded by `check` (the recipe's validation calls it) to size the local crops.
    _image_size: int | None = PrivateAttr(None)

    @field_validator("global_crops_scale", "local_crops_scale")
    @classmethod
    def _scale_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] <= 1:
            raise ValueError(f"expected 0 < min <= max <= 1, got {list(v)}")
        return v

    def local_size_at(self, image_size: int | None = None) -> int:
        """The local crops' side: local_size, or DINO's proportion of data.image_size (`image_size`, else the one
        the recipe's validation recorded)."""
        if self.local_size is not None:
            return self.local_size
        size = image_size if image_size is not None else self._image_size
        if size is None:
            raise ValueError("pretext.local_size: not set, and no data.image_size to derive it from (validate the "
                             "settings within a recipe, or set local_size)")
        return local_crop_size(size)

    def view_groups(self, image_size: int | None = None) -> list[ViewGroup]:
        # One group per global crop (each its own blur / solarization), then the local crops. The probabilities
        # go to the byol family only when the list holds it (the sampler refuses parameters of absent families).
        has_byol = any(f.name == BYOL_FAMILY for f in self.family_weights())

        def params(blur: float, solarize: float) -> dict[str, dict[str, object]]:
            return {BYOL_FAMILY: {"blur_p": blur, "solarize_p": solarize}} if has_byol else {}

        groups = [ViewGroup(1, None, self.global_crops_scale, params(*bs), name=f"global{i + 1}")
                  for i, bs in enumerate(GLOBAL_BLUR_SOLARIZE)]
        if self.local_crops:
            groups.append(ViewGroup(self.local_crops, self.local_size_at(image_size), self.local_crops_scale,
                                    params(*LOCAL_BLUR_SOLARIZE), name="local"))
        return groups

    def check(self, batch_size: int, image_size: int) -> None:
        if self.views != GLOBAL_CROPS:
            raise _error_at("pretext.views", f"DINO takes exactly {GLOBAL_CROPS} global crops, got {self.views} (more "
                            "views: pretext.local_crops)")
        if self.local_size is not None and self.local_size > image_size:
            raise _error_at("pretext.local_size", f"{self.local_size} is larger than the global crops' "
                            f"data.image_size = {image_size}")
        self._image_size = image_size

    def chance_loss(self, batch_size: int) -> float | None:
        return math.log(self.out_dim)  # cross-entropy of uniform targets and outputs

    def teacher_temp_at(self, progress: Progress) -> float:
        """This epoch's teacher temperature (DINOLoss teacher_temp_schedule[epoch])."""
        from urrlkit.pretext.schedules import dino_teacher_temp

        return dino_teacher_temp(progress.epoch, self.warmup_teacher_temp, self.teacher_temp,
                                 self.warmup_teacher_temp_epochs)

    def momentum_at(self, progress: Progress) -> float:
        """The teacher momentum of this iteration (main_dino.py momentum_schedule[it])."""
        from urrlkit.pretext.schedules import dino_momentum

        return dino_momentum(self.momentum_teacher, progress.step, progress.steps)

    def build(self, encoder: Encoder, ctx: BuildContext) -> dict[str, nn.Module]:
        import torch
        from torch import nn

        from urrlkit.pretext.ema import momentum_copy
        from urrlkit.pretext.freeze import StepFreeze
        from urrlkit.pretext.heads import DINOHead

        head = DINOHead(encoder.feature_dim, self.out_dim, self.hidden_dim, self.bottleneck_dim, self.head_layers,
                        self.use_bn_in_head, self.norm_last_layer)
        center = nn.Module()
        center.register_buffer("center", torch.zeros(1, self.out_dim))
        # main_dino.py: the teacher starts as the student (load_state_dict) and takes no gradient.
        return {"head": head, "teacher_encoder": without_stochastic_depth(momentum_copy(encoder)),
                "teacher_head": momentum_copy(head), "center": center,
                # utils.py cancel_gradients_last_layer drops every parameter named *last_layer* of the student.
                "freeze": StepFreeze(p for p in head.last_layer.parameters() if p.requires_grad)}

    def forward(self, model: PretextModel, views: list[Tensor], index: Tensor, progress: Progress) -> StepOutput:
        import torch
        import torch.distributed as dist
        import torch.nn.functional as F

        from urrlkit.engine.progress import StepOutput
        from urrlkit.pretext.common import rank_world
        from urrlkit.pretext.freeze import StepFreeze
        from urrlkit.pretext.heads import DINOHead
        from urrlkit.pretext.losses import dino_center, dino_loss

        head, teacher_head = model.part("head", DINOHead), model.part("teacher_head", DINOHead)
        # The loop's step follows this forward: the last layer skips it during the first freeze_last_layer epochs.
        model.part("freeze", StepFreeze).active = progress.epoch < self.freeze_last_layer
        b, n = views[0].shape[0], len(views)
        feats = multi_crop_features(model.encoder, views)
        bottleneck = F.normalize(head.mlp(feats), dim=-1, p=2)  # DINOHead.forward, in its two halves
        student = head.last_layer(bottleneck).float().chunk(n)
        with torch.no_grad():
            teacher_out = teacher_head(model.parts["teacher_encoder"](torch.cat(views[:GLOBAL_CROPS]))).float()
        center = model.parts["center"].get_buffer("center")
        temp = self.teacher_temp_at(progress)
        teacher = list(teacher_out.chunk(GLOBAL_CROPS))
        loss = dino_loss(list(student), teacher, center, self.student_temp, temp)
        with torch.no_grad():
            p_t = F.softmax((teacher_out - center) / temp, dim=-1)
            entropy = -(p_t * torch.log(p_t.clamp_min(1e-30))).sum(dim=-1).mean()
            world = rank_world()[1]
            batch_sum = None
            if world > 1:  # DINOLoss.update_center all-reduces the row sum
                batch_sum = teacher_out.sum(dim=0, keepdim=True)
                dist.all_reduce(batch_sum)
            center.copy_(dino_center(center, teacher_out, self.center_momentum, batch_sum=batch_sum,
                                     world_size=world))
        stats: dict[str, Tensor | float] = {"teacher_temp": temp, "teacher_entropy": entropy,
                                            "kl": loss.detach() - entropy}
        emb = (bottleneck[:b].detach().float(), bottleneck[b:2 * b].detach().float())
        return StepOutput(loss, features=feats[:b], embeddings=emb, stats=stats)

    def after_step(self, model: PretextModel, progress: Progress) -> None:
        from urrlkit.pretext.ema import ema_update_

        p = model.parts
        ema_update_([*p["teacher_encoder"].parameters(), *p["teacher_head"].parameters()],
                    [*model.encoder.parameters(), *p["head"].parameters()], self.momentum_at(progress))

    def warnings(self, model: PretextModel, ctx: BuildContext) -> list[str]:
        lines = []
        if self.warmup_teacher_temp_epochs > ctx.epochs:
            lines.append(f"warning: pretext.warmup_teacher_temp_epochs = {self.warmup_teacher_temp_epochs} exceeds "
                         f"optim.epochs = {ctx.epochs}: the teacher temperature never reaches {self.teacher_temp}")
        if ctx.processes > 1 and any(isinstance(m, _batch_norm_types()) for m in model.modules()):
            lines.append(f"warning: DINO BN statistics are per process ({ctx.processes} processes); the reference "
                         "synchronises them (SyncBatchNorm)")
        return lines


def _batch_norm_types() -> tuple[type, ...]:
    from torch import nn

    return (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
