"""Every registered augmentation family at the edges of its random draws.

All of a family's randomness comes from ``torch.rand`` (uniforms, and the Beta / Dirichlet draws made from them
by inverse CDFs: augment/rand.py, prime.arcsine, pixmix.get_ab) and ``torch.randint``. Here both are forced to
their extremes — rand to 0 or to the largest value it can return (1 − 2⁻²⁴ in float32, which e.g. PRIME's
Beta(½, ½) rounds to exactly 1.0), randint to its lowest or highest value — every element at one edge, each
element at a random one of the two, and randint cycling through its whole range (every op of every list) with
rand at either edge. The generator still advances as in a real run: the real draw is made, then overwritten.

Every view must be finite and in [0, 1], and every output row must be written: ``torch.empty``, ``empty_like``
and ``new_empty`` are filled with NaN (integers with 0) in one run and with −3 (integers with 77) in a second,
and the two runs must agree exactly — a row left unwritten shows the fill.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import Tensor

from urrlkit import registry
from urrlkit.augment import build_family, build_sampler, fractals
from urrlkit.config import FamilySpec

MODES = ("low", "high", "mixed", "cycle-low", "cycle-high")
B = 12  # views per call: with width-3 chains, 36 chains cycle through every op of the longest list (16)

# Every registered family with its defaults, plus the settings that switch on draws the defaults skip.
VARIANTS: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in registry.FAMILIES.in_order()] + [
    ("augmix_moco", {"all_ops": False}),
    ("byol", {"solarize_p": 0.5}),
    ("pixmix", {"all_ops": False}),
    ("pixmix", {"k": 1}),
    ("prime", {"color": False, "filter": False}),  # every chain a diffeomorphism: the cut's edges
    ("prime", {"diffeo": False, "filter": False}),
    ("prime", {"diffeo": False, "filter": False, "color_bandwidth": 5}),
    ("prime", {"diffeo": False, "color": False}),
    ("augmix", {"depth": 2}),
    ("randaugment", {"num_ops": 3, "interpolation": "bilinear"}),
]
SMALL = {"mixing_set_size": 4}  # pixmix: a small fractal set, built before the draws are forced


def _fill(t: Tensor, lo: float | int, hi: float | int, mode: str, side: torch.Generator,
          cycle: bool) -> Tensor:
    if cycle:
        return t.copy_((torch.arange(t.numel(), device=t.device) % (int(hi) - int(lo) + 1) + int(lo)).view(t.shape))
    if mode == "mixed":
        pick = _REAL["rand"](t.shape, generator=side, device=t.device) < 0.5
        return t.copy_(torch.where(pick, torch.tensor(hi, dtype=t.dtype, device=t.device),
                                   torch.tensor(lo, dtype=t.dtype, device=t.device)))
    return t.fill_(hi if mode.endswith("high") else lo)


_REAL: dict[str, Callable[..., Tensor]] = {"rand": torch.rand, "randint": torch.randint, "empty": torch.empty,
                                           "empty_like": torch.empty_like}
_REAL_NEW_EMPTY = torch.Tensor.new_empty


def _randint_range(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, int]:
    """(low, high − 1) of a torch.randint call: randint(high, size) or randint(low, high, size)."""
    ints = [a for a in args if isinstance(a, int)]
    low = kwargs.get("low", ints[0] if len(ints) > 1 else 0)
    high = kwargs.get("high", ints[1] if len(ints) > 1 else ints[0])
    return int(low), int(high) - 1


@contextmanager
def edge_draws(mode: str, float_fill: float = float("nan"), int_fill: int = 0) -> Iterator[None]:
    """Force every ``torch.rand`` / ``torch.randint`` draw to an edge (``mode``) and fill every new empty
    tensor with ``float_fill`` / ``int_fill``, inside the block."""
    side = torch.Generator().manual_seed(0)  # which edge each element takes in "mixed"
    cycle = mode.startswith("cycle")

    def rand(*args: Any, **kwargs: Any) -> Tensor:
        t = _REAL["rand"](*args, **kwargs)
        return _fill(t, 0.0, 1 - torch.finfo(t.dtype).eps / 2, mode, side, False)

    def randint(*args: Any, **kwargs: Any) -> Tensor:
        t = _REAL["randint"](*args, **kwargs)
        return _fill(t, *_randint_range(args, kwargs), mode, side, cycle)

    def filled(t: Tensor) -> Tensor:
        if t.is_floating_point():
            return t.fill_(float_fill)
        return t.fill_(int_fill) if t.dtype != torch.bool else t.fill_(bool(int_fill))

    saved = {name: getattr(torch, name) for name in _REAL}
    torch.rand, torch.randint = rand, randint
    torch.empty = lambda *a, **k: filled(_REAL["empty"](*a, **k))
    torch.empty_like = lambda *a, **k: filled(_REAL["empty_like"](*a, **k))
    torch.Tensor.new_empty = lambda self, *a, **k: filled(_REAL_NEW_EMPTY(self, *a, **k))  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch, name, fn)
        torch.Tensor.new_empty = _REAL_NEW_EMPTY  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def images() -> Tensor:
    """Images in [0, 1] with pure black, pure white and a full ramp (the 8-bit extremes every op meets), 40 px
    so the crops have room."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 3, 40, 40, generator=g)
    x[0], x[1] = 0.0, 1.0
    x[2] = torch.linspace(0, 1, 40 * 40).view(1, 40, 40)
    return (x * 255).round_().div_(255)


def _build(name: str, size: int, params: dict[str, Any]) -> Any:
    fam: Any = build_family(name, size, **({**SMALL, **params} if name == "pixmix" else params))
    if name == "pixmix":
        fam.pictures(torch.device("cpu"))  # the mixing set, made outside the forced draws
    return fam


def _check(run: Callable[[], Tensor], mode: str, size: int, n: int) -> Tensor:
    """Run twice under ``mode`` with different fills of the new empty tensors: the same views, every row
    finite and in [0, 1]."""
    outs = []
    for float_fill, int_fill in ((float("nan"), 0), (-3.0, 77)):
        with edge_draws(mode, float_fill, int_fill):
            outs.append(run())
    a, b = outs
    assert a.shape == (n, 3, size, size)
    rows = a.flatten(1)
    bad = (~torch.isfinite(rows)).any(1) | (rows < 0).any(1) | (rows > 1).any(1)
    assert not bad.any(), f"rows {bad.nonzero().flatten().tolist()} non-finite or outside [0, 1]"
    assert torch.equal(a, b), "some output rows were never written (they show the fill of torch.empty)"
    return a


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [32, 96])
@pytest.mark.parametrize(("name", "params"), VARIANTS, ids=[",".join([n, *(f"{k}={v}" for k, v in p.items())])
                                                         for n, p in VARIANTS])
def test_family_at_edge_draws(images: Tensor, name: str, params: dict[str, Any], size: int, mode: str) -> None:
    """The whole family (crop, flip, then its own ops) and, where it has one, its photometric stage alone."""
    fam = _build(name, size, params)
    _check(lambda: fam(images, torch.Generator().manual_seed(2)), mode, size, B)
    if callable(getattr(fam, "photometric", None)):
        views = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=False)
        views = (views.clamp(0, 1) * 255).round_().div_(255)
        _check(lambda: fam.photometric(views, torch.Generator().manual_seed(3)), mode, size, B)


@pytest.mark.parametrize("mode", MODES)
def test_eq2_sampler_over_every_family_at_edge_draws(images: Tensor, mode: str) -> None:
    """Paper Eq. 2's sampler over every registered family at once (its own draws forced too: with rand at 0 all
    views go to the first family, at its top to the last)."""
    specs = [FamilySpec(name=n, weight=1.0, params=SMALL if n == "pixmix" else {}) for n in
             registry.FAMILIES.in_order()]
    sampler = build_sampler(specs, image_size=32, views=2)
    for f, n in zip(sampler.families, sampler.names, strict=True):
        if n == "pixmix":
            f.pictures(torch.device("cpu"))  # type: ignore[attr-defined]
    x = (images * 255).round().to(torch.uint8)
    _check(lambda: torch.cat(sampler(x, torch.Generator().manual_seed(4))[0]), mode, 32, 2 * B)


@pytest.mark.parametrize("mode", MODES)
def test_fractal_mixing_set_at_edge_draws(mode: str) -> None:
    """The offline fractal generator under forced draws: every picture still shows some of its fractal (a
    degenerate system, e.g. all maps singular, must not poison the chaos game with NaN)."""
    with edge_draws(mode):
        pics = fractals.fractal_images(6, 36, seed=5, points=4_000)
    assert pics.shape == (6, 3, 36, 36) and pics.dtype == torch.uint8
    assert (pics.flatten(1).amax(1) > 0).all(), "a fractal came out black"
