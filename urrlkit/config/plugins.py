"""Recipe sections whose schema a plugin declares: [pretext] is the settings class of the method it names, [model]
that of the backbone it names (urrlkit/registry.py: registered, or found through Python entry points).

`Dispatch` is the field validator behind both: the table's tag (`method`, `backbone`) picks the class from the
registry, and the class validates the rest of the table. Errors keep Pydantic's shape, with the tag inserted
into the location after the field name as Pydantic does for its own discriminated unions, so the one-line
messages (config/errors.py) can name the right class's fields ("unknown key pretext.pirl_lambda for method
'moco_v2'; allowed here: …").
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError, ValidatorFunctionWrapHandler
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from urrlkit.registry import Registry


class Dispatch:
    """Wrap validator for a field holding one of a registry's settings classes, picked by the table's `key`.

    A table without the key takes `default`. The registry entry must be a Pydantic model class whose `key`
    field accepts the name (plugins declare it as a Literal of their own name, or a str for prefixed names)."""

    def __init__(self, registry: Registry, key: str, default: str, base: type[BaseModel]) -> None:
        self.registry, self.key, self.default, self.base = registry, key, default, base

    def resolve(self, tag: Any) -> type[BaseModel] | None:
        """The settings class for `tag`, None when the registry has no such entry."""
        if not isinstance(tag, str) or not self.registry.knows(tag):
            return None
        cls = self.registry.get(tag)
        return cls if isinstance(cls, type) and issubclass(cls, self.base) else None

    def __call__(self, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, self.base):
            return value
        if not isinstance(value, dict):
            return handler(value)  # Pydantic's own "expected a table" error
        tag = value.get(self.key, self.default)
        cls = self.resolve(tag)
        if cls is None:
            choices = self.registry.in_order()
            expected = " or ".join(filter(None, [", ".join(map(repr, choices[:-1])), *map(repr, choices[-1:])]))
            raise PydanticCustomError("union_tag_invalid", "unknown {discriminator} {tag!r}", {
                "discriminator": f"'{self.key}'", "tag": str(tag), "expected_tags": expected})
        try:
            return cls.model_validate({**value, self.key: tag})
        except ValidationError as err:
            raise _retagged(err, str(tag), cls.__name__) from None


def _retagged(err: ValidationError, tag: str, title: str) -> ValidationError:
    """`err` with `tag` in front of every location, as a discriminated union reports its member's errors."""
    details: list[InitErrorDetails] = []
    for e in err.errors():
        loc = (tag, *e["loc"])
        ctx = e.get("ctx")
        detail = InitErrorDetails(type=e["type"], loc=loc, input=e["input"])
        if ctx:
            detail["ctx"] = ctx
        try:
            ValidationError.from_exception_data(title, [detail])
        except (KeyError, TypeError, ValueError):  # our own error types (urrl_at_key): re-created as custom errors
            detail = InitErrorDetails(type=PydanticCustomError(e["type"], e["msg"], ctx), loc=loc, input=e["input"])
        details.append(detail)
    return ValidationError.from_exception_data(title, details)


def dispatch_of(field: FieldInfo) -> Dispatch | None:
    """The Dispatch among a field's validators, if any (config/errors.py walks error locations with it)."""
    for meta in field.metadata:
        func = getattr(meta, "func", None)
        if isinstance(func, Dispatch):
            return func
    return None
