"""Reading recipes: TOML files, `extends` composition, `--set` overrides, validation and writing back.

`load(path, overrides)` returns a validated `Recipe`; any problem raises `RecipeError` whose message names the
file and the dotted path at fault.
"""

from __future__ import annotations

import os
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


# Recipes are a few kilobytes; these caps turn hostile or mistaken input into one line instead of a RecursionError,
# an exhausted memory or a Python-internal limit. Deeper/longer than any real recipe, far below where things break.
MAX_RECIPE_BYTES = 1 << 20  # per file: the largest shipped recipe is ~7 kB
MAX_EXTENDS_DEPTH = 32  # files in one extends chain: the shipped recipes use at most 3
MAX_NESTING = 32  # tables / arrays inside one another: a recipe's deepest is pretext.families[i].params (4)
_INT64 = (-(2**63), 2**63 - 1)  # TOML 1.0 'Integer': 64-bit signed; out of range "an error must be thrown"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as f:  # text mode, as read_text: universal newlines
            text = f.read(MAX_RECIPE_BYTES + 1)  # characters, each at least a byte: a bound on the bytes read
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe ({exc.strerror})") from None
    if len(text) > MAX_RECIPE_BYTES:
        raise RecipeError(f"{path}: recipe file larger than {MAX_RECIPE_BYTES >> 20} MiB; a recipe holds settings, "
                          "not data")
    try:
        raw = tomllib.loads(text)
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
        if text.startswith("\ufeff"):  # some Windows editors write one; tomllib, as TOML 1.0, takes none
            where, msg = str(path), "the file starts with a byte-order mark (save it as UTF-8 without BOM)"
        raise RecipeError(f"{where}: malformed TOML: {msg}") from None
    except (RecursionError, ValueError) as exc:  # tomllib recurses per inline level; int() has a digit limit
        raise RecipeError(f"{path}: malformed TOML: {_parse_limit(exc)}") from None
    _check_values(raw, str(path))
    return raw


def _parse_limit(exc: RecursionError | ValueError) -> str:
    if isinstance(exc, RecursionError):
        return f"inline tables or arrays nested too deeply (at most {MAX_NESTING} levels)"
    if "integer string conversion" in str(exc):
        return "an integer with thousands of digits (integers are 64-bit)"
    return str(exc)


def _check_values(value: Any, source: str, where: str = "", depth: int = 0) -> None:
    """TOML's 64-bit integers (tomllib reads any size) and MAX_NESTING, iteratively: merging, validation and
    writing back all recurse, so a 1000-deep `[a.a.a…]` would otherwise end in a RecursionError. `value` sits
    `depth` tables down (a --set's dotted key)."""
    if depth > MAX_NESTING:
        raise RecipeError(f"{source}: the key is nested more than {MAX_NESTING} levels deep")
    stack = [(where, value, depth)]
    while stack:
        at, v, depth = stack.pop()
        if isinstance(v, int) and not isinstance(v, bool) and not _INT64[0] <= v <= _INT64[1]:
            raise RecipeError(f"{source}: {at or '(top level)'}: integer outside TOML's 64-bit range "
                              "(-2^63 to 2^63 - 1)")
        items = list(v.items()) if isinstance(v, dict) else list(enumerate(v)) if isinstance(v, list) else []
        if items and depth >= MAX_NESTING:
            shown = at if len(at) <= 80 else at[:77] + "..."
            raise RecipeError(f"{source}: {shown}: tables or arrays nested more than {MAX_NESTING} levels deep")
        for k, child in items:
            key = f"[{k}]" if isinstance(k, int) else f".{k}" if at else str(k)
            stack.append((at + key, child, depth + 1))


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
    real = Path(os.path.realpath(path))  # unlike Path.resolve, no RuntimeError on a symlink loop: open says ELOOP
    if real in seen:
        chain = " -> ".join(p.name for p in (*seen, real))
        raise RecipeError(f"{path}: circular extends ({chain})")
    raw = _read_toml(path)
    parent = raw.get("extends")
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent:
        raise RecipeError(f"{path}: extends: expected a recipe file name string, got {parent!r}")
    if len(seen) + 1 >= MAX_EXTENDS_DEPTH:
        raise RecipeError(f"{path}: extends: chain longer than {MAX_EXTENDS_DEPTH} recipe files (this is file "
                          f"{len(seen) + 1}); let a recipe extend a base closer to the root")
    parent_path = path.parent / parent
    if not parent_path.is_file():
        what = ("is a folder, not a recipe file" if parent_path.is_dir()
                else "is not a regular file" if parent_path.exists() else "recipe file not found")
        raise RecipeError(f"{path}: extends: {what}: {parent_path}")
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
        raise RecipeError(f"--set {_shown(item)}: expected KEY=VALUE with a dotted KEY, for example optim.lr=0.1")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    except (RecursionError, ValueError) as exc:
        raise RecipeError(f"--set {_shown(item)}: {_parse_limit(exc)}") from None
    _check_values(value, f"--set {_shown(item)}", key, len(keys))
    return keys, value


def _shown(item: str) -> str:
    """A --set item for a message: whole when short, its key when the value is huge."""
    return repr(item) if len(item) <= 80 else repr(item.partition("=")[0][:60] + "=...")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Each `--set a.b=v` merges like an extending file holding `[a] b = v` (see deep_merge): a table value merges
    key by key (`--set 'optim={epochs=1}'` keeps the other optim keys), an empty table replaces (`--set
    finetune.sweep={}`: no sweep), a new `type` replaces its table, and a new pretext method / backbone drops the
    old one's own keys. Returns the new data; `data` is not changed."""
    for item in overrides:
        keys, value = parse_override(item)
        if keys[0] == "extends":
            # extends is resolved when the file is read, before any --set: accepting it here would be a no-op
            raise RecipeError(f"--set {_shown(item)}: extends can only be given in the recipe file")
        node: Any = data
        for k in keys[:-1]:
            node = node.get(k, {})
            if not isinstance(node, dict):
                raise RecipeError(f"--set {_shown(item)}: {k!r} is a value, not a table")
        if value == {}:
            # an empty table says "none of these" (e.g. `--set finetune.sweep={}`: no sweep): merged, it would
            # change nothing, so it replaces the value
            data = _replaced(data, keys, {})
            continue
        over: Any = value
        for k in reversed(keys):
            over = {k: over}
        data = deep_merge(data, over)
    return data


def _replaced(data: dict[str, Any], keys: list[str], value: Any) -> dict[str, Any]:
    """`data` with the value at the dotted `keys` replaced by `value` (the tables on the way copied)."""
    out = dict(data)
    node = out
    for k in keys[:-1]:
        node[k] = dict(node.get(k) or {})
        node = node[k]
    node[keys[-1]] = value
    return out


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
