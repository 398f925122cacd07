"""One-line messages for Pydantic validation errors: `source: dotted.path: what is wrong; allowed: …`."""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from urrlkit.config.plugins import Dispatch, dispatch_of
from urrlkit.config.recipe import Recipe
from urrlkit.registry import nearest


def _models_in(ann: Any) -> list[type[BaseModel]]:
    """The Pydantic models inside an annotation (through Optional, list[...], unions)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    return [m for a in get_args(ann) for m in _models_in(a)]


def _owner(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that owns the last key of `loc`. A discriminated union's tag, which Pydantic inserts into
    the location after the field name, picks the member; a plugin field's tag (config/plugins.py Dispatch, e.g.
    [pretext]'s method) picks the plugin's settings class."""
    return _walk(loc)[0]


def _walk(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, str | None]:
    """(_owner of `loc`, the last plugin tag passed on the way, e.g. 'moco_v2')."""
    model: type[BaseModel] | None = Recipe
    plugin: str | None = None
    i = 0
    while i < len(loc) - 1:
        p = loc[i]
        if isinstance(p, int):
            i += 1
            continue
        field = model.model_fields.get(p) if model else None
        if field is None:
            return None, plugin
        dispatch = dispatch_of(field)
        members = _models_in(field.annotation)
        if dispatch is not None:
            model, plugin = dispatch.resolve(loc[i + 1]), f"{dispatch.key} {loc[i + 1]!r}"
            i += 2
        elif len(members) > 1:
            tag = loc[i + 1]
            model = next((m for m in members if _tag(m) == tag), None)
            i += 2
        else:
            model = members[0] if members else None
            i += 1
    return model, plugin


def _tag(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("type")
    return field.default if field else None


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    tag_of: Any = None  # what the next element of loc is, when it is a tag Pydantic or Dispatch inserted
    model: type[BaseModel] | None = Recipe
    for p in loc:
        if tag_of is not None:  # the discriminator tag is not a key the user wrote
            model = tag_of.resolve(p) if isinstance(tag_of, Dispatch) else next(
                (m for m in tag_of if _tag(m) == p), None)
            tag_of = None
            continue
        if isinstance(p, int):
            parts.append(f"[{p}]")
            continue
        parts.append(("." if parts else "") + str(p))
        field = model.model_fields.get(p) if model else None
        members = _models_in(field.annotation) if field else []
        dispatch = dispatch_of(field) if field else None
        tag_of = dispatch if dispatch is not None else members if len(members) > 1 else None
        model = members[0] if len(members) == 1 and dispatch is None else None
    return "".join(parts)


def _bounds(loc: tuple[Any, ...]) -> str:
    """'0 <= p <= 1' from the Field constraints of the key at `loc` ('' when unknown)."""
    owner = _owner(loc)
    key = loc[-1]
    field = owner.model_fields.get(key) if owner and isinstance(key, str) else None
    if field is None:
        return ""
    lo = hi = None
    for c in field.metadata:
        if getattr(c, "ge", None) is not None:
            lo = ("<=", c.ge)
        elif getattr(c, "gt", None) is not None:
            lo = ("<", c.gt)
        if getattr(c, "le", None) is not None:
            hi = ("<=", c.le)
        elif getattr(c, "lt", None) is not None:
            hi = ("<", c.lt)
    if lo and hi:
        return f"{lo[1]} {lo[0]} {key} {hi[0]} {hi[1]}"
    if lo:
        return f"{key} {lo[0].replace('<', '>')} {lo[1]}"
    if hi:
        return f"{key} {hi[0]} {hi[1]}"
    return ""


def _choices(expected: str) -> list[str]:
    """["no", "fp16", "bf16"] from Pydantic's "'no', 'fp16' or 'bf16'"."""
    return [c.strip().strip("'\"") for c in re.split(r",| or ", expected) if c.strip()]


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line for the first problem: `source: dotted.path: what is wrong; allowed: …`."""
    errors = err.errors()
    first = errors[0]
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    loc = tuple(first["loc"])
    where = _dotted(loc) or "(top level)"
    kind = first["type"]
    ctx = first.get("ctx") or {}
    value = first.get("input")
    if kind == "extra_forbidden":
        owner, plugin = _walk(loc)
        allowed = [k for k in owner.model_fields if k != "type"] if owner else []
        hint = nearest(str(loc[-1]), allowed)
        of = f" for {plugin}" if plugin else ""
        return f"{source}: unknown key {where}{of}{hint}; allowed here: {', '.join(allowed) or 'none'}{more}"
    if kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        bounds = _bounds(loc) or first["msg"].removeprefix("Input should be ")
        return f"{source}: {where} = {value!r} is out of range; allowed: {bounds}{more}"
    if kind in {"literal_error", "enum"}:
        choices = _choices(ctx.get("expected", ""))
        hint = nearest(value, choices) if isinstance(value, str) else ""
        return f"{source}: {where} = {value!r} is not allowed{hint}; allowed: {', '.join(choices)}{more}"
    if kind == "union_tag_invalid":
        choices = _choices(ctx.get("expected_tags", ""))
        tag = ctx.get("tag")
        disc = str(ctx.get("discriminator", "type")).strip("'")
        hint = nearest(str(tag), choices)
        return f"{source}: {where}.{disc} = {tag!r} is not allowed{hint}; allowed: {', '.join(choices)}{more}"
    if kind == "union_tag_not_found":
        disc = str(ctx.get("discriminator", "type")).strip("'")
        owner = _owner(loc)
        field = owner.model_fields.get(loc[-1]) if owner and isinstance(loc[-1], str) else None
        tags = [str(_tag(m)) for m in _models_in(field.annotation)] if field else []
        return f"{source}: {where}.{disc} is missing; allowed: {', '.join(tags) or '?'}{more}"
    if kind == "missing":
        return f"{source}: {where} is required but missing{more}"
    if kind == "finite_number":
        return f"{source}: {where} = {value!r} is not allowed; allowed: a finite number{more}"
    if kind == "urrl_at_key":
        at = ".".join(x for x in (where if loc else "", ctx["key"]) if x)
        return f"{source}: {at}: {ctx['message']}{more}"
    msg = first["msg"].removeprefix("Value error, ")
    # Our own validators already quote the value; Pydantic's type errors don't.
    shown = kind != "value_error" and not isinstance(value, dict)
    extra = f" (got {value!r})" if shown and "input" in first else ""
    return f"{source}: {where}: {msg}{extra}{more}"
