"""The family sampler of URRL (paper Eq. 2): T ~ {T_rob w.p. p, T_rep w.p. 1 − p}, then t ~ T.

Generalised to any weighted list of registered families: for every view of every image, independently, a
family is drawn with probability proportional to its weight, then that family draws the augmentation. The
paper's URRL is ``[augmix_allop: 0.5, moco_v2: 0.5]``; ``catalog.family_mix.family_weights`` expands ``p``, and
``family_cdf`` / ``draw_families`` below are the draw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from urrlkit.augment.groups import copy_rows_, group
from urrlkit.catalog.family_mix import family_probabilities
from urrlkit.errors import UrrlError
from urrlkit.registry import FAMILIES

if TYPE_CHECKING:
    from urrlkit.augment.crops import CropSpec

Family = Callable[[Tensor, torch.Generator], Tensor]


class WeightedFamily(Protocol):
    """One entry of a weighted family list: a registered family's name, its weight in Eq. 2 and its factory's
    keyword values. A recipe's FamilySpec is one; so is any object with these three attributes."""

    @property
    def name(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def params(self) -> Mapping[str, object]: ...


def family_cdf(weights: Sequence[float], device: torch.device | str = "cpu") -> Tensor:
    """Paper Eq. 2's distribution as a float64 CDF: cdf[k] = Σ_{j ≤ k} w_j / Σ_j w_j."""
    return torch.tensor(family_probabilities(weights), dtype=torch.float64, device=device).cumsum(0)


def draw_families(cdf: Tensor, u: Tensor) -> Tensor:
    """Paper Eq. 2's draw by inverse CDF: family k for each u in [0, 1) with cdf[k − 1] ≤ u < cdf[k].

    A u exactly on a boundary goes to the family on its right; a zero-weight family has an empty interval, so it
    is never drawn — also when rounding leaves cdf[-1] < 1 and a u falls past it: that u goes to the last
    family of positive weight (found on the device, without a host sync).
    """
    last = torch.searchsorted(cdf, cdf[-1:])  # the first index that reaches the total
    return torch.searchsorted(cdf, u, right=True).clamp_(max=last)


def to_float(x: Tensor) -> Tensor:
    """uint8 → float32 in [0, 1]; float input is taken to be in [0, 1] already."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    return x.float()


class FamilySampler:
    """Draws ``views`` augmented views per image, each from a family drawn independently per (view, image).

    ``sampler(x, g)`` → (views, fam): a list of ``views`` float32 tensors (B, 3, image_size, image_size) in
    [0, 1] and a LongTensor (views, B) of family indices into ``sampler.names``. All views of the batch are
    grouped by family, so every family runs once per call on its share of the (views · B) images.
    """

    def __init__(self, names: Sequence[str], weights: Sequence[float], families: Sequence[Family],
                 image_size: int, views: int = 2, chunk_mib: float | None = 8.0) -> None:
        if not (len(names) == len(weights) == len(families)) or not names:
            raise ValueError("names, weights and families must be non-empty and of equal length")
        family_probabilities(weights)  # raises for negative or all-zero weights
        if views < 1:
            raise ValueError(f"views must be ≥ 1, got {views}")
        self.names = list(names)
        self.weights = [float(w) for w in weights]
        self.families = list(families)
        self.image_size = image_size
        self.views = views
        if chunk_mib is not None and chunk_mib <= 0:
            raise ValueError(f"chunk_mib must be > 0 or None, got {chunk_mib}")
        self.chunk_mib = chunk_mib
        self._cdf: dict[torch.device, Tensor] = {}

    @property
    def probabilities(self) -> list[float]:
        return family_probabilities(self.weights)

    def draw_families(self, n: int, g: torch.Generator) -> Tensor:
        """n family indices (paper Eq. 2): `draw_families` of n uniform float64 draws from g."""
        cdf = self._cdf.get(g.device)
        if cdf is None:  # cached per device: a host→GPU copy on every call would synchronise the stream
            cdf = self._cdf[g.device] = family_cdf(self.weights, g.device)
        return draw_families(cdf, torch.rand(n, generator=g, device=g.device, dtype=torch.float64))

    def chunk_size(self, x: Tensor) -> int | None:
        """Images per family call on the CPU: enough that one float32 image batch fills ``chunk_mib``.

        Families make a dozen full-batch temporaries per op; kept near the cache size they are several times
        cheaper per element than at 100+ MB, where every pass streams from memory and large blocks are
        mmap'd and page-faulted afresh (the URRL sampler at 224 px, 1 thread: 198 → 314 views/s). On a
        GPU one launch per op for the whole batch is what matters, so there is no chunking.
        """
        if self.chunk_mib is None or x.device.type != "cpu":
            return None
        side = max(self.image_size, *x.shape[-2:])
        return max(1, int(self.chunk_mib * 2**20 // (4 * x.shape[1] * side * side)))

    def out_shape(self, x: Tensor) -> tuple[int, int, int, int]:
        """Shape of the (views·B, C, size, size) buffer that the views of x fill."""
        return (self.views * x.shape[0], x.shape[1], self.image_size, self.image_size)

    def __call__(self, x: Tensor, g: torch.Generator, out: Tensor | None = None,
                 fam: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """Views of x (B, C, H, W); ``out`` (views·B, C, size, size) float32, if given, receives them (e.g. a
        buffer in shared memory, which a DataLoader worker can then hand over without a copy). ``fam``
        (views·B,), if given, are the families already drawn for these views (a ``ViewSampler`` draws those of
        all its groups at once); otherwise they are drawn here, first, from ``g``."""
        b = x.shape[0]
        s = self.image_size
        if fam is None:
            fam = self.draw_families(self.views * b, g)  # view-major: index v·B + i
        elif fam.shape != (self.views * b,):
            raise ValueError(f"fam must have shape ({self.views * b},), got {tuple(fam.shape)}")
        shape = self.out_shape(x)
        if out is None:
            out = torch.empty(shape, device=x.device)
        elif out.shape != shape or out.dtype != torch.float32:
            raise ValueError(f"out must be a float32 tensor of shape {shape}, got {out.dtype} {tuple(out.shape)}")
        chunk = self.chunk_size(x)
        for k, idx in group(fam, len(self.families)):
            for part in (idx.split(chunk) if chunk else (idx,)):
                # Select in the stored dtype (uint8: a quarter of the float traffic), convert per family.
                copy_rows_(out, part, self.families[k](to_float(x.index_select(0, part % b)), g).to(out.dtype))
        return list(out.view(self.views, b, x.shape[1], s, s).unbind(0)), fam.view(self.views, b)

    def crop_specs(self) -> list[CropSpec]:
        """Each family's geometric first stage, for views cut from original images (augment/crops.py)."""
        specs = []
        for name, f in zip(self.names, self.families, strict=True):
            spec = getattr(f, "crop_spec", None)
            if spec is None or not callable(getattr(f, "photometric", None)):
                raise UrrlError(f"family {name!r} has no crop_spec and photometric stage, so its crops cannot be "
                                "drawn on the original images; set data.crop_from = 'stored'")
            specs.append(spec)
        return specs

    def photometric(self, x: Tensor | Sequence[Tensor], fam: Tensor, g: torch.Generator,
                    out: Tensor | None = None) -> list[Tensor]:
        """The families' stages after the crop and flip, on views already cut to image_size (crops.crop_views):
        x (views·B, C, s, s) uint8 or float [0, 1], view-major, or the list of its views (B, C, s, s); fam
        (views, B) the families they drew. Returns the views as ``__call__`` does; ``out`` as there."""
        views, b = fam.shape
        if not isinstance(x, Tensor):
            x = torch.cat(list(x))
        shape = (views * b, *x.shape[1:])
        if x.shape[0] != views * b or x.shape[-1] != self.image_size:
            raise ValueError(f"expected {views * b} views of {self.image_size} px, got {tuple(x.shape)}")
        if out is None:
            out = torch.empty(shape, device=x.device)
        elif out.shape != shape or out.dtype != torch.float32:
            raise ValueError(f"out must be a float32 tensor of shape {shape}, got {out.dtype} {tuple(out.shape)}")
        chunk = self.chunk_size(x)
        for k, idx in group(fam.reshape(-1), len(self.families)):
            stage = self.families[k].photometric  # type: ignore[attr-defined]
            for part in (idx.split(chunk) if chunk else (idx,)):
                copy_rows_(out, part, stage(to_float(x.index_select(0, part)), g).to(out.dtype))
        return list(out.view(views, b, *x.shape[1:]).unbind(0))

    def __repr__(self) -> str:
        pairs = ", ".join(f"{n}: {p:.3g}" for n, p in zip(self.names, self.probabilities, strict=True))
        return f"FamilySampler({{{pairs}}}, image_size={self.image_size}, views={self.views})"


def build_family(name: str, image_size: int, **params: object) -> Family:
    """Instantiate a registered family (unknown names raise with the registered ones)."""
    return FAMILIES.get(name)(image_size=image_size, **params)


def build_sampler(specs: Sequence[WeightedFamily], image_size: int, views: int = 2,
                  chunk_mib: float | None = 8.0) -> FamilySampler:
    """A sampler from the recipe's weighted family list (``PretextConfig.family_weights()``)."""
    specs = list(specs)
    if not specs:
        raise ValueError("build_sampler: the family list is empty")
    families = [build_family(s.name, image_size, **s.params) for s in specs]
    return FamilySampler([s.name for s in specs], [s.weight for s in specs], families, image_size, views, chunk_mib)
