"""Views in groups (urrlkit/views.py ``ViewGroup``): the Eq. 2 sampler for views of several sizes and crop scales.

A method asks for groups of views — MoCo v2's two views at data.image_size, DINO's 2 global + N local crops, BYOL's
two views whose family draws its blur and solarization with different probabilities — and every view of every
group draws its family by paper Eq. 2, per (view, image), from the one weighted family list. ``ViewSampler`` is one
``FamilySampler`` per group (the single-group engine, unchanged): the group's families are built at its size with
its parameter overrides, and with its crop scale in front when it gives one (``GroupCrop``). All views' families
are drawn first, in one call (view-major over the groups in order), then each group makes its views.

With one group ``ViewGroup(views)`` (no size, scale or parameters) every path gives exactly what a ``FamilySampler``
gives (the same draws from the same generator, the same tensors): the ``FamilySampler`` draws its families first
too, and ``ViewSampler`` hands its one group the same draw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from urrlkit.augment import geometry
from urrlkit.augment.crops import CropSpec
from urrlkit.augment.sampler import Family, FamilySampler, WeightedFamily, build_family
from urrlkit.errors import UrrlError
from urrlkit.views import ViewGroup, group_offsets, same_views, total_views

RATIO = (3 / 4, 4 / 3)


class GroupCrop:
    """A family whose geometric first stage is replaced by its view group's: RandomResizedCrop(size, scale, ratio
    3/4–4/3) + horizontal flip, then the family's own ``photometric`` stage. A local crop stays local whichever
    family it draws (DINO's ``local_transfo``: ``RandomResizedCrop(96, scale=local_crops_scale)`` + flip, then the
    colour stage; facebookresearch/dino main_dino.py ``DataAugmentationDINO``).

    Deviations, named: the resize is bilinear (DINO's crops resize BICUBIC); views cut from originals go through
    PIL's bilinear as every other crop of urrlkit (augment/crops.py). The flip follows the family's own setting
    (``CropSpec.flip``: on for every built-in family by default; ``flip = false`` in its parameters, or
    ``identity``, keeps it off) rather than being forced on.
    """

    def __init__(self, family: Family, name: str, size: int, scale: tuple[float, float]) -> None:
        if not callable(getattr(family, "photometric", None)):
            raise UrrlError(f"family {name!r} has no photometric stage, so a view group's crop scale cannot be put "
                            "in front of it")
        own = getattr(family, "crop_spec", None)
        self.family = family
        self.image_size = size
        self.scale = (float(scale[0]), float(scale[1]))
        self.flip = bool(own.flip) if isinstance(own, CropSpec) else True

    @property
    def crop_spec(self) -> CropSpec:
        return CropSpec("rrc", scale=self.scale, ratio=RATIO, flip=self.flip)

    def __call__(self, x: Tensor, g: torch.Generator) -> Tensor:
        cut = geometry.random_resized_crop(x, self.image_size, g, scale=self.scale, ratio=RATIO, flip=self.flip)
        return self.photometric(cut.clamp_(0, 1), g)

    def photometric(self, x: Tensor, g: torch.Generator) -> Tensor:
        return self.family.photometric(x, g)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"GroupCrop({self.family!r}, size={self.image_size}, scale={self.scale})"


class ViewSampler:
    """The views of a list of ``ViewGroup`` s: one ``FamilySampler`` per group, all on the same weighted family
    list (the same ``names`` and Eq. 2 weights, so a family index means the same family in every group).

    ``sampler(x, g)`` → (views, fam): ``views`` a list of ``views`` float32 tensors (B, 3, s, s), group-major then
    view order, s the view's group's size (``view_sizes``); ``fam`` the (views, B) family indices into ``names``.
    """

    def __init__(self, groups: Sequence[ViewGroup], samplers: Sequence[FamilySampler]) -> None:
        if not groups or len(groups) != len(samplers):
            raise ValueError("groups and samplers must be non-empty and of equal length")
        for grp, s in zip(groups, samplers, strict=True):
            if s.views != grp.count:
                raise ValueError(f"view group {grp.name!r} has {grp.count} views, its sampler {s.views}")
            if s.names != samplers[0].names or s.weights != samplers[0].weights:
                raise ValueError("every group's sampler must draw from the same weighted family list")
        self.groups = list(groups)
        self.samplers = list(samplers)
        self.names = list(samplers[0].names)
        self.weights = list(samplers[0].weights)
        self.views = total_views(self.groups)
        self.sizes = [s.image_size for s in self.samplers]  # per group
        self.counts = [grp.count for grp in self.groups]
        self.offsets = group_offsets(self.groups)  # each group's first view
        self.view_sizes = [s for s, n in zip(self.sizes, self.counts, strict=True) for _ in range(n)]

    @classmethod
    def of(cls, sampler: FamilySampler | ViewSampler) -> ViewSampler:
        """``sampler`` itself, or a ``FamilySampler`` as the one group of its ``views`` views."""
        if isinstance(sampler, ViewSampler):
            return sampler
        return cls([ViewGroup(sampler.views, sampler.image_size)], [sampler])

    @property
    def probabilities(self) -> list[float]:
        return self.samplers[0].probabilities

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(views, size) of each group."""
        return list(zip(self.counts, self.sizes, strict=True))

    def draw_families(self, n: int, g: torch.Generator) -> Tensor:
        """n family indices (paper Eq. 2), one per (view, image), view-major over all groups: views · B for B
        images, row v·B + i for view v of image i."""
        return self.samplers[0].draw_families(n, g)

    def split(self, fam: Tensor) -> list[Tensor]:
        """fam (views·B,) or (views, B) → each group's rows, (count·B,) or (count, B) (views of fam, not copies)."""
        b = fam.shape[-1] if fam.dim() == 2 else fam.shape[0] // self.views
        per_row = 1 if fam.dim() == 2 else b
        return [fam[o * per_row:(o + n) * per_row] for o, n in zip(self.offsets, self.counts, strict=True)]

    def crop_specs(self) -> list[list[CropSpec]]:
        """Per group, each family's geometric first stage (for views cut from original images, augment/crops.py)."""
        return [s.crop_specs() for s in self.samplers]

    def out_shapes(self, x: Tensor) -> list[tuple[int, int, int, int]]:
        """Per group, the (count·B, C, size, size) buffer that its views of x fill."""
        return [s.out_shape(x) for s in self.samplers]

    def __call__(self, x: Tensor, g: torch.Generator, out: Sequence[Tensor] | None = None
                 ) -> tuple[list[Tensor], Tensor]:
        """Views of x (B, C, H, W), every group from the same stored images; ``out``, if given, one float32
        buffer per group (``out_shapes``) that receives its views."""
        b = x.shape[0]
        fam = self.draw_families(self.views * b, g)
        if out is not None and len(out) != len(self.samplers):
            raise ValueError(f"out must hold one buffer per group ({len(self.samplers)}), got {len(out)}")
        views: list[Tensor] = []
        for j, (s, part) in enumerate(zip(self.samplers, self.split(fam), strict=True)):
            views += s(x, g, out=None if out is None else out[j], fam=part)[0]
        return views, fam.view(self.views, b)

    def photometric(self, x: Tensor | Sequence[Tensor], fam: Tensor, g: torch.Generator,
                    out: Sequence[Tensor] | None = None) -> list[Tensor]:
        """Each group's families' stages after the crop and flip, on views already cut to their group's size.

        ``x``: one tensor per group (count·B, C, s, s), view-major, or the list of all views (B, C, s, s) (the
        two coincide where every group holds one view), or, with one group, the (views·B, C, s, s) tensor that
        ``FamilySampler.photometric`` takes. ``fam`` (views, B). Returns the views as ``__call__`` does; ``out``,
        if given, one float32 buffer per group."""
        if out is not None and len(out) != len(self.samplers):
            raise ValueError(f"out must hold one buffer per group ({len(self.samplers)}), got {len(out)}")
        if len(self.samplers) == 1:  # exactly FamilySampler.photometric, without a copy of a lone group tensor
            one = x[0] if not isinstance(x, Tensor) and len(x) == 1 else x
            return self.samplers[0].photometric(one, fam, g, out=None if out is None else out[0])
        if isinstance(x, Tensor):
            raise ValueError(f"views of {len(self.samplers)} groups come as a list, not one tensor")
        x = list(x)
        if len(x) == self.views:
            x = [torch.cat(x[o:o + n]) if n > 1 else x[o] for o, n in zip(self.offsets, self.counts, strict=True)]
        elif len(x) != len(self.samplers):
            raise ValueError(f"expected {self.views} views or {len(self.samplers)} group tensors, got {len(x)}")
        views: list[Tensor] = []
        for j, (s, xj, fj) in enumerate(zip(self.samplers, x, self.split(fam), strict=True)):
            views += s.photometric(xj, fj, g, out=None if out is None else out[j])
        return views

    def __repr__(self) -> str:
        pairs = ", ".join(f"{n}: {p:.3g}" for n, p in zip(self.names, self.probabilities, strict=True))
        groups = ", ".join(f"{grp.name} {grp.count}×{s}px" + (f" scale {grp.scale}" if grp.scale else "")
                           for grp, s in zip(self.groups, self.sizes, strict=True))
        return f"ViewSampler({{{pairs}}}, groups=[{groups}])"


def group_params(specs: Sequence[WeightedFamily], group: ViewGroup) -> list[dict[str, object]]:
    """Each family's keyword values in ``group``: the group's ``params`` for that family name over the spec's.
    A group that sets parameters of a family the list does not hold is refused (its asymmetry would be lost)."""
    names = [s.name for s in specs]
    unknown = sorted(set(group.params) - set(names))
    if unknown:
        raise UrrlError(f"view group {group.name!r} sets parameters of {', '.join(map(repr, unknown))}, which the "
                        f"family list ({', '.join(names)}) does not hold")
    return [{**s.params, **group.params.get(s.name, {})} for s in specs]


def build_group_family(name: str, size: int, params: Mapping[str, object], group: ViewGroup) -> Family:
    try:
        family = build_family(name, size, **params)
    except TypeError as exc:  # a keyword the factory does not take: the group's parameters come from code
        raise UrrlError(f"view group {group.name!r}: family {name!r} ({exc})") from None
    return family if group.scale is None else GroupCrop(family, name, size, group.scale)


def build_view_sampler(specs: Sequence[WeightedFamily], image_size: int, groups: Sequence[ViewGroup] | None = None,
                       chunk_mib: float | None = 8.0) -> ViewSampler:
    """A sampler of ``groups`` (default: ``same_views(2)``) from the recipe's weighted family list, views of a
    group without a size at ``image_size``. Per group, the families are built at its size with its parameters
    (``group_params``) and, if it gives a scale, its RandomResizedCrop in front (``GroupCrop``); otherwise each
    family keeps its own crop — ``[ViewGroup(v)]`` is ``build_sampler(specs, image_size, v)``, bit for bit."""
    specs = list(specs)
    if not specs:
        raise ValueError("build_view_sampler: the family list is empty")
    groups = list(groups) if groups is not None else same_views(2)
    if not groups:
        raise ValueError("build_view_sampler: no view groups")
    samplers = []
    for grp in groups:
        size = grp.size_at(image_size)
        families = [build_group_family(s.name, size, p, grp) for s, p in zip(specs, group_params(specs, grp),
                                                                               strict=True)]
        samplers.append(FamilySampler([s.name for s in specs], [s.weight for s in specs], families, size,
                                      grp.count, chunk_mib))
    return ViewSampler(groups, samplers)
