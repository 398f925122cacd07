"""Which views a pretraining method asks the augmentation for: groups of views of one size and crop scale.

Torch-free plain data, so a method's settings (urrlkit/pretext/methods) declare them and the sampler (urrlkit/augment)
makes them without either importing the other. Every view of every group draws its family by paper Eq. 2, the
small crops of multi-crop methods (DINO's local crops) included.

- MoCo v2, SimCLR, MoCo v3: one group, two views at data.image_size, each family's own crop.
- BYOL: two groups of one view each, at the same size, whose representation family draws its blur and
  solarization with the probabilities of that view (the asymmetric T and T′ of BYOL's Table 6).
- DINO: two global views (scale 0.4–1) and N local views (scale 0.05–0.4, 96 px at 224): ``multi_crop``.

urrlkit/augment/multiview.py ``build_view_sampler`` makes them; the views come out group-major, then in view order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ViewGroup:
    """`count` views of `size` px (None: data.image_size).

    `scale`, if given, replaces every family's RandomResizedCrop area range for these views (a local crop stays
    local whichever family it draws); None keeps each family's own crop. `params` maps a family name to parameter
    values that family takes for these views only (over the recipe's), e.g. {"byol": {"blur_p": 0.1}}."""

    count: int
    size: int | None = None
    scale: tuple[float, float] | None = None
    params: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    name: str = "views"

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"ViewGroup {self.name!r}: count must be ≥ 1, got {self.count}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"ViewGroup {self.name!r}: size must be ≥ 1, got {self.size}")
        if self.scale is not None and not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"ViewGroup {self.name!r}: scale must satisfy 0 < min ≤ max ≤ 1, got {self.scale}")

    def size_at(self, image_size: int) -> int:
        return self.size or image_size


def total_views(groups: Sequence[ViewGroup]) -> int:
    return sum(g.count for g in groups)


def same_views(count: int) -> list[ViewGroup]:
    """`count` views at data.image_size with each family's own crop: the two-view methods' default."""
    return [ViewGroup(count)]


def view_sizes(groups: Sequence[ViewGroup], image_size: int) -> list[int]:
    """The size of every view, group-major then in view order (the order the sampler returns them in)."""
    return [g.size_at(image_size) for g in groups for _ in range(g.count)]


def group_offsets(groups: Sequence[ViewGroup]) -> list[int]:
    """The index of each group's first view among all views."""
    return [sum(g.count for g in groups[:j]) for j in range(len(groups))]


# DINO's multi-crop defaults (facebookresearch/dino main_dino.py: --global_crops_scale 0.4 1, --local_crops_number
# 8, --local_crops_scale 0.05 0.4; global crops RandomResizedCrop(224), local ones RandomResizedCrop(96)).
GLOBAL_SCALE = (0.4, 1.0)
LOCAL_SCALE = (0.05, 0.4)
LOCAL_CROPS = 8


def local_crop_size(image_size: int) -> int:
    """DINO's local crop side for views of ``image_size``: 96 px at 224 (main_dino.py), in proportion elsewhere
    (14 px at 32). DINO fixes 224 / 96; the proportion for other sizes is urrlkit's choice."""
    return max(1, round(image_size * 96 / 224))


def multi_crop(image_size: int, local_views: int = LOCAL_CROPS, global_views: int = 2,
               global_scale: tuple[float, float] = GLOBAL_SCALE, local_scale: tuple[float, float] = LOCAL_SCALE,
               local_size: int | None = None) -> list[ViewGroup]:
    """DINO's multi-crop as view groups: ``global_views`` at image_size with ``global_scale``, then ``local_views``
    of ``local_size`` (default ``local_crop_size``) with ``local_scale`` (none with ``local_views = 0``). Every
    view draws its family (Eq. 2); the groups set only the crops."""
    groups = [ViewGroup(global_views, None, global_scale, name="global")]
    if local_views:
        size = local_size if local_size is not None else local_crop_size(image_size)
        groups.append(ViewGroup(local_views, size, local_scale, name="local"))
    return groups
