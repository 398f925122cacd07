"""Reading recipes: TOML files, `extends` composition, `--set` overrides, validation and writing back.

`load(path, overrides)` returns a validated `Recipe`; any problem raises `RecipeError` whose message names the
file and the dotted path at fault.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from urrlkit import registry
from urrlkit.config.errors import format_validation_error
from urrlkit.config.recipe import Recipe
from urrlkit.errors import RecipeError

_TOML_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Editors and terminals jump to 'file:line:col'; tomllib only puts the position in its message.
        msg = str(exc)
        if m := _TOML_POS.search(msg):
            where = f"{path}:{m[1]}:{m[2]}"
            msg = msg[: m.start()]
        elif m := _TOML_END.search(msg):
            lines = text.splitlines() or [""]
            where = f"{path}:{len(lines)}:{len(lines[-1]) + 1}"
            msg = msg[: m.start()] + " at end of file"
        else:
            where = str(path)
        raise RecipeError(f"{where}: malformed TOML: {msg}") from None


def deep_merge(base: dict[str, Any], over: dict[str, Any], _path: tuple[str, ...] = ()) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) in `over` replaces the base value.

    A table whose `type` tag changes (e.g. finetune.regularizer sim → l2sp) is replaced whole: the old
    variant's keys (sim's `weight`) mean nothing to the new one and would only be rejected as unknown. When
    [pretext]'s `method` or [model]'s `backbone` changes, the base's keys that the new method / backbone does not
    declare are dropped (MoCo's queue_size under InstDis), those it declares carry over (see `_keep_declared`)."""
    out = dict(base)
    for key, value in over.items():
        prev = out.get(key)
        if isinstance(value, dict) and isinstance(prev, dict) and not _retagged(prev, value):
            out[key] = deep_merge(_keep_declared((*_path, key), prev, value), value, (*_path, key))
        else:
            out[key] = value
        for other in _ALTERNATIVE.get(key, ()):
            if other not in over:
                out.pop(other, None)
    return out


# Groups of keys that state one value in different ways: a layer (an extending file, a --set) giving one replaces
# the others that a base gave; one file giving two is an error (OptimConfig). Each key → the rest of its group.
_ALTERNATIVE_GROUPS = (("lr", "lr_per_256", "lr_sqrt"),)
_ALTERNATIVE: dict[str, tuple[str, ...]] = {
    key: tuple(k for k in group if k != key) for group in _ALTERNATIVE_GROUPS for key in group}


def _retagged(base: dict[str, Any], over: dict[str, Any]) -> bool:
    return "type" in base and "type" in over and base["type"] != over["type"]


# Tables whose schema is the plugin their tag names (config/pretext.py, config/model.py): path → (tag, registry).
_PLUGIN_TABLES: dict[tuple[str, ...], tuple[str, registry.Registry]] = {
    ("pretext",): ("method", registry.PRETEXTS), ("model",): ("backbone", registry.BACKBONES)}


def _keep_declared(path: tuple[str, ...], table: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`table` (a base layer's [pretext] or [model]) without the keys that the plugin `over` switches to does not
    declare. An unknown new tag keeps everything: validation then names the tag."""
    if path not in _PLUGIN_TABLES:
        return table
    tag_key, reg = _PLUGIN_TABLES[path]
    if tag_key not in over or over[tag_key] == table.get(tag_key):
        return table
    tag = over[tag_key]
    if not isinstance(tag, str) or not reg.knows(tag):
        return table
    fields = getattr(reg.get(tag), "model_fields", None)
    return table if fields is None else {k: v for k, v in table.items() if k in fields}


def _resolve(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read `path` and, recursively, the file its `extends` names (relative to `path`'s folder).
    Messages use `path` as the user spelled it; the resolved path only detects cycles."""
    real = path.resolve()
    if real in seen:
        chain = " -> ".join(p.name for p in (*seen, real))
        raise RecipeError(f"{path}: circular extends ({chain})")
    raw = _read_toml(path)
    parent = raw.get("extends")
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent:
        raise RecipeError(f"{path}: extends: expected a recipe file name string, got {parent!r}")
    parent_path = path.parent / parent
    if not parent_path.is_file():
        raise RecipeError(f"{path}: extends: recipe file not found: {parent_path}")
    base = _resolve(parent_path, (*seen, real))
    merged = deep_merge(base, raw)
    merged["extends"] = parent
    return merged


def parse_override(item: str) -> tuple[list[str], Any]:
    """'a.b=value' → (['a', 'b'], value) with value parsed as TOML (bare words become strings)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    keys = [k.strip() for k in key.split(".")]
    if not sep or not key or not all(keys):
        raise RecipeError(f"--set {item!r}: expected KEY=VALUE with a dotted KEY, for example optim.lr=0.1")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return keys, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for i, k in enumerate(keys[:-1]):
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set {item!r}: {k!r} is a value, not a table")
            if i == len(keys) - 2:  # --set pretext.method=… drops the old method's own keys, as an extending file
                child = node[k] = _keep_declared(tuple(keys[:-1]), child, {keys[-1]: value})
            node = child
        if keys[-1] == "type" and node.get("type", value) != value:
            node.clear()  # a new variant (see deep_merge): follow with --set for its own keys
        for other in _ALTERNATIVE.get(keys[-1], ()):
            node.pop(other, None)
        node[keys[-1]] = value
    return data


def validate_dict(data: dict[str, Any], source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_validation_error(source, err)) from None


def load(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file, resolve `extends`, apply `--set` overrides and validate."""
    path = Path(path)
    data = apply_overrides(_resolve(path), overrides or [])
    return validate_dict(data, str(path))


def to_file(recipe: Recipe, path: Path) -> None:
    path.write_text(recipe.to_toml(), encoding="utf-8")
