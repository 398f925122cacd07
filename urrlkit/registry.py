"""A small generic name → object registry shared by data sets, backbones, families, pretexts,
regularizers, corruptions and evaluation suites.

Entries are found three ways, checked in this order by `get`:
- registered in Python (`@REG.register("name")`), e.g. in a notebook or a test;
- *declared* (`declare`): bound to the module that defines it, imported on the first `get` (with an optional
  torch-free `check` of the object's parameters);
- **Python entry points** of the registry's group (`urrlkit.pretexts`, `urrlkit.backbones`, …), the
  ecosystem's plugin convention: urrlkit's own built-in methods and backbones are declared in its
  pyproject.toml exactly as a third-party package declares its own, e.g.

      [project.entry-points."urrlkit.pretexts"]
      my_method = "my_package.my_method:MyMethod"

  Entry-point names are read from the installed packages' metadata without importing anything; an entry is
  loaded on its first `get`. For pretexts and backbones the object is a torch-free settings class
  (urrlkit/config/pretext.py `MethodSettings`, config/model.py `BackboneSettings`), so validating a recipe
  never imports torch.

A name `prefix:rest` (e.g. `timm:vit_small_patch16_224`) that is not itself an entry resolves to the entry
`prefix` when that entry says it takes such names (a class attribute `prefixed = True`)."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import types
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
    """Maps names to objects; `get` of an unknown name raises with the allowed names. `group` is the entry-point
    group whose entries this registry also holds (None: none)."""

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._declared: dict[str, Declaration] = {}
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None

    def entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        """The group's entry points by name, read once from the installed packages' metadata (no import). Two
        packages declaring one name is an error naming both, rather than one silently shadowing the other."""
        if self._entry_points is None:
            found: dict[str, importlib.metadata.EntryPoint] = {}
            for ep in importlib.metadata.entry_points(group=self.group) if self.group else ():
                other = found.get(ep.name)
                if other is not None and other.value != ep.value:
                    raise UrrlError(f"{self.kind} {ep.name!r} is declared twice, by {_dist(other)} ({other.value}) "
                                    f"and {_dist(ep)} ({ep.value}); uninstall one of them")
                found[ep.name] = ep
            self._entry_points = found
        return self._entry_points

    def refresh(self) -> None:
        """Read the entry points again (after installing a plugin package in this process)."""
        self._entry_points = None
        importlib.invalidate_caches()

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
            ep = self.entry_points().get(name)
            if ep is not None:
                return self._load(name, ep)
            prefix = self._prefix_entry(name)
            if prefix is not None:
                return prefix
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

    def _load(self, name: str, ep: importlib.metadata.EntryPoint) -> T:
        """The entry point's object: a Declaration (declared, then got: e.g. a family and its torch-free check), a
        module (which registered `name` as it was imported), or the entry itself."""
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin names itself instead of failing somewhere inside urrlkit
            raise UrrlError(f"{self.kind} {name!r}: its entry point {ep.value} ({_dist(ep)}) failed to load: "
                            f"{type(exc).__name__}: {exc}") from exc
        if isinstance(obj, Declaration):
            self._declared.setdefault(name, obj)
            return self.get(name)
        if isinstance(obj, types.ModuleType):
            if name not in self._items:
                raise UrrlError(f"{self.kind} {name!r}: {ep.value} was imported but did not register it")
            return self._items[name]
        self._items.setdefault(name, obj)
        return self._items[name]

    def _prefix_entry(self, name: str) -> T | None:
        """The entry `prefix` for a name `prefix:rest`, when that entry takes prefixed names."""
        prefix, sep, rest = name.partition(":")
        if not sep or not rest or prefix not in self:
            return None
        obj = self.get(prefix)
        return obj if getattr(obj, "prefixed", False) else None

    def check_target(self, name: str) -> Callable[..., Any]:
        """What validation calls with an entry's parameters: the declared torch-free `check` while the entry
        is still the declared object, else the registered object itself (a user's own entry)."""
        ep = self.entry_points().get(name)
        if name not in self._declared and ep is not None:
            obj = ep.load()  # a Declaration loads without torch; anything else is the entry itself (as get would)
            if isinstance(obj, Declaration):
                self._declared[name] = obj
        decl = self._declared.get(name)
        if decl is not None and decl.check is not None and (
                name not in self._items or decl.describes(self._items[name])):
            return decl.check
        return self.get(name)  # type: ignore[return-value]

    def declaration(self, name: str) -> Declaration | None:
        return self._declared.get(name)

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}{nearest(name, self.names())}; allowed: {', '.join(self.names())}"

    def _keys(self) -> set[str]:
        return self._items.keys() | self._declared.keys() | self.entry_points().keys()

    def names(self) -> list[str]:
        return sorted(self._keys())

    def in_order(self) -> list[str]:
        """The names as declared, then those registered, in registration order (a module registering several
        entries decides their order: the evaluation suites run in it), then the entry points not loaded yet."""
        loaded = [n for n in self._items if n not in self._declared]
        seen = {*self._declared, *loaded}
        return [*self._declared, *loaded, *(n for n in self.entry_points() if n not in seen)]

    def knows(self, name: str) -> bool:
        """Whether `get(name)` would find an entry, counting `prefix:rest` names of prefixed entries (which
        imports the prefix's entry, a torch-free settings class for the built-in ones)."""
        if name in self:
            return True
        prefix, sep, rest = name.partition(":")
        return bool(sep and rest and prefix in self and getattr(self.get(prefix), "prefixed", False))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._keys())


def _dist(ep: importlib.metadata.EntryPoint) -> str:
    """The name of the package that declares an entry point."""
    dist = getattr(ep, "dist", None)
    return f"package {dist.name}" if dist is not None else "an installed package"


DATASETS: Registry[Callable] = Registry("data set", "urrlkit.datasets")
BACKBONES: Registry[Any] = Registry("backbone", "urrlkit.backbones")  # BackboneSettings classes
FAMILIES: Registry[Callable] = Registry("augmentation family", "urrlkit.families")
PRETEXTS: Registry[Any] = Registry("pretext method", "urrlkit.pretexts")  # MethodSettings classes
REGULARIZERS: Registry[Callable] = Registry("regularizer", "urrlkit.regularizers")
CORRUPTIONS: Registry[Callable] = Registry("corruption", "urrlkit.corruptions")
SUITES: Registry[Any] = Registry("suite", "urrlkit.suites")  # evaluation suites (urrlkit/evaluate/builtin_suites.py)
ALL = (DATASETS, BACKBONES, FAMILIES, PRETEXTS, REGULARIZERS, CORRUPTIONS, SUITES)


def resolve_all() -> None:
    """Import every declared entry (tests, and tools that list live objects)."""
    for reg in ALL:
        for name in [*reg._declared, *reg.entry_points()]:
            reg.get(name)
