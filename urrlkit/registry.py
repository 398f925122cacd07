"""A small generic name → object registry shared by data sets, backbones, families, pretexts,
regularizers, corruptions and evaluation suites. Registration is a decorator, so users extend urrlkit without
editing it.

A name may also be *declared* (`declare`): bound to the module that defines it, imported on the first `get`.
urrlkit declares its built-in entries that way (urrlkit/catalog), so checking a name — what recipe validation
does — never imports torch. A declaration may carry a `check`: a torch-free function with the object's
signature that raises ValueError on values the object would reject, so parameters can be checked without
building anything."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from urrlkit.errors import UrrlError

T = TypeVar("T")


def nearest(name: str, choices: list[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


@dataclass(frozen=True)
class Declaration:
    """Where a declared entry lives: `target` is 'module:qualname', or 'module' for an object that the module
    registers itself (e.g. one built in a loop)."""

    target: str
    check: Callable[..., Any] | None = None

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def describes(self, obj: object) -> bool:
        """Whether `obj` is the object this declaration points at (judged by its module and name)."""
        module, _, qualname = self.target.partition(":")
        return getattr(obj, "__module__", None) == module and (
            not qualname or getattr(obj, "__qualname__", None) == qualname)


class Registry(Generic[T]):
    """Maps names to objects; `get` of an unknown name raises with the allowed names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._declared: dict[str, Declaration] = {}

    def declare(self, name: str, target: str, *, check: Callable[..., Any] | None = None) -> None:
        """Make `name` known without importing `target` ('module:qualname' or 'module'); see Declaration."""
        if name in self._declared:
            raise ValueError(f"{self.kind} {name!r} is already declared")
        self._declared[name] = Declaration(target, check)

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            decl = self._declared.get(name)
            # Binding a declared name is its module being imported, not a clash.
            taken = name in self._items or (decl is not None and not decl.describes(obj))
            if taken and not overwrite:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            if decl is not None and not decl.describes(obj):
                del self._declared[name]  # overwritten: the declaration (and its check) no longer applies
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T, *, overwrite: bool = False) -> T:
        return self.register(name, overwrite=overwrite)(obj)

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        decl = self._declared.get(name)
        if decl is None:
            raise UrrlError(self.unknown_message(name))
        module_name, _, qualname = decl.target.partition(":")
        module = importlib.import_module(module_name)  # registers the module's entries as it runs
        if name not in self._items and qualname:
            obj: Any = module
            for part in qualname.split("."):
                obj = getattr(obj, part)
            self._items[name] = obj
        if name not in self._items:
            raise UrrlError(f"{self.kind} {name!r}: {module_name} was imported but did not register it")
        return self._items[name]

    def check_target(self, name: str) -> Callable[..., Any]:
        """What validation calls with an entry's parameters: the declared torch-free `check` while the entry
        is still the declared object, else the registered object itself (a user's own entry)."""
        decl = self._declared.get(name)
        if decl is not None and decl.check is not None and (
                name not in self._items or decl.describes(self._items[name])):
            return decl.check
        return self.get(name)  # type: ignore[return-value]

    def declaration(self, name: str) -> Declaration | None:
        return self._declared.get(name)

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}{nearest(name, self.names())}; allowed: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._items.keys() | self._declared.keys())

    def in_order(self) -> list[str]:
        """The names as declared, then those registered without a declaration, in registration order."""
        return [*self._declared, *(n for n in self._items if n not in self._declared)]

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._declared

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items.keys() | self._declared.keys())


DATASETS: Registry[Callable] = Registry("data set")
BACKBONES: Registry[Callable] = Registry("backbone")
FAMILIES: Registry[Callable] = Registry("augmentation family")
PRETEXTS: Registry[Callable] = Registry("pretext method")
REGULARIZERS: Registry[Callable] = Registry("regularizer")
CORRUPTIONS: Registry[Callable] = Registry("corruption")
SUITES: Registry[Any] = Registry("suite")  # evaluation suites (urrlkit/evaluate/builtin_suites.py `Suite`)
ALL = (DATASETS, BACKBONES, FAMILIES, PRETEXTS, REGULARIZERS, CORRUPTIONS, SUITES)


def load_builtins() -> None:
    """Declare urrlkit's built-in entries (torch-free: nothing concrete is imported until an entry is used).
    By module name: the catalog imports this module, so a static import here would be a cycle."""
    importlib.import_module("urrlkit.catalog")


def resolve_all() -> None:
    """Import every declared entry (tests, and tools that list live objects)."""
    load_builtins()
    for reg in ALL:
        for name in list(reg._declared):
            reg.get(name)
