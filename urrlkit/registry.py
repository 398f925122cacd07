"""A small generic name → object registry shared by data sets, backbones, families, pretexts,
regularizers and corruptions. Registration is a decorator, so users extend urrlkit without editing it."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from urrlkit.errors import UrrlError

T = TypeVar("T")


def nearest(name: str, choices: list[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


class Registry(Generic[T]):
    """Maps names to objects; `get` of an unknown name raises with the allowed names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T, *, overwrite: bool = False) -> T:
        return self.register(name, overwrite=overwrite)(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UrrlError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}{nearest(name, self.names())}; allowed: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


DATASETS: Registry[Callable] = Registry("data set")
BACKBONES: Registry[Callable] = Registry("backbone")
FAMILIES: Registry[Callable] = Registry("augmentation family")
PRETEXTS: Registry[Callable] = Registry("pretext method")
REGULARIZERS: Registry[Callable] = Registry("regularizer")
CORRUPTIONS: Registry[Callable] = Registry("corruption")


def load_builtins() -> None:
    """Import the modules whose decorators fill the registries (cheap; no data is touched)."""
    import urrlkit.augment
    import urrlkit.data
    import urrlkit.evaluate.corruptions
    import urrlkit.models  # noqa: F401
