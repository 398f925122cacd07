"""The weighted augmentation families of [pretext] (paper Eq. 2's list): `FamilySpec` and the validation of a
family's parameters against the family's own torch-free check at data.image_size."""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any, get_args

from pydantic import Field, field_validator, model_validator

from urrlkit import registry
from urrlkit.config.sections import Section, _check_registered, _error_at, _scalars
from urrlkit.registry import nearest


class FamilySpec(Section):
    name: str
    weight: float = Field(1.0, ge=0)
    params: dict[str, float | int | bool | str] = Field(
        default_factory=dict, description="keyword arguments of the family's factory; checked at validation "
        "against the family's ranges at data.image_size")

    @field_validator("params", mode="before")
    @classmethod
    def _scalar_params(cls, v: Any) -> Any:
        return _scalars(v)

    @field_validator("name")
    @classmethod
    def _known_family(cls, v: str) -> str:
        return _check_registered(registry.FAMILIES, v)

    @model_validator(mode="after")
    def _known_params(self) -> FamilySpec:
        sig = inspect.signature(registry.FAMILIES.check_target(self.name))
        allowed = [p for p in sig.parameters if p != "image_size"]
        if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return self
        for key in self.params:
            if key not in allowed:
                raise ValueError(
                    f"unknown parameter {key!r} for family {self.name!r}{nearest(key, allowed)}; "
                    f"allowed: {', '.join(allowed) or 'none'}"
                )
        return self


def _check_family_params(where: str, fam: FamilySpec, image_size: int) -> None:
    """Check the parameters as the family's factory will, so a parameter of the wrong type or outside the
    family's range is a validation error naming `<where>.params.<key>` instead of a crash at the first batch.
    Built-in families are checked by their torch-free checks (urrlkit/catalog/families.py); a user's registered
    factory is called once."""
    factory = registry.FAMILIES.check_target(fam.name)
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # a user's factory whose annotations do not resolve: no type check, the call still checks
        hints = {}
    for key, value in fam.params.items():
        if (problem := _type_problem(value, hints.get(key))) is not None:
            raise _error_at(f"{where}.params.{key}", f"{problem} (family {fam.name!r})")
    try:
        factory(image_size, **fam.params)
    except (ValueError, TypeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        named = [k for k in fam.params if re.search(rf"\b{re.escape(k)}\b", msg)]
        param = named[0] if named else None
        if param is not None and msg.startswith(param):
            msg = msg[len(param):].lstrip(" :")
        raise _error_at(f"{where}.params" + (f".{param}" if param else ""),
                        f"{msg} (family {fam.name!r} at data.image_size = {image_size})") from None


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why `value` does not fit the factory annotation `hint` (None when it fits or the hint says nothing)."""
    if hint is None or hint is Any:
        return None
    members = [a for a in (get_args(hint) if get_args(hint) and typing.get_origin(hint) is not tuple else (hint,))
               if a is not type(None)]
    if not all(a in (bool, int, float, str) for a in members):
        return None  # tuples, callables, ...: left to the factory
    fits = (bool in members if isinstance(value, bool) else
            (int in members or float in members) if isinstance(value, int) else
            float in members if isinstance(value, float) else str in members)
    if fits:
        return None
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return f"expected {' or '.join(names[a] for a in members)}, got {value!r}"
