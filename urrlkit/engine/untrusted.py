"""One bounded JSON reader for files this process did not write: config.json, a safetensors file's metadata
config, eval results, RobustBench model-info files, whatever a Hub repo or another user supplied.

Every way such a file can be bad ends in one `UrrlError` line naming it (CheckpointError unless the caller
names another): too large (read stops at the cap, so a huge file costs no memory), not UTF-8 text (a Latin-1
or UTF-16 file, a binary), malformed JSON, nesting deeper than `MAX_DEPTH` (also where the C parser itself
would raise RecursionError), an integer literal longer than `MAX_INT_DIGITS` digits (Python's int parser is
quadratic in the digits and refuses more than `sys.get_int_max_str_digits()`), a string with a lone UTF-16
surrogate escape (it cannot be printed or written back as UTF-8).

Torch-free and stdlib-only: `urrl recipe validate` and `urrl --help` import nothing heavier through it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from urrlkit.errors import CheckpointError, UrrlError

MAX_JSON_BYTES = 16 << 20  # a recipe, a card summary or a results table fits in a few kB
MAX_DEPTH = 64  # urrlkit's own files nest 5 levels (config.json's recipe); 64 leaves room for foreign ones
MAX_INT_DIGITS = 64  # any count, size or seed fits in 20 digits
_SURROGATE = re.compile("[\ud800-\udfff]")


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


class _Refused(ValueError):
    """A reason raised from inside the parser's hooks, turned into the caller's error with the source."""


def _check_tree(obj: Any) -> None:
    """Depth and strings of a parsed value, iteratively (a deep value must not recurse here either)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise _Refused("a key with a lone UTF-16 surrogate escape")
                stack.append((value, depth + 1))
        elif isinstance(node, str) and _SURROGATE.search(node):
            raise _Refused("a string with a lone UTF-16 surrogate escape")


def parse_json(data: bytes | str, source: str | Path, what: str = "JSON file", *,
               max_bytes: int = MAX_JSON_BYTES, error: type[UrrlError] = CheckpointError) -> Any:
    """`data` (read from `source`) as a JSON value, within the bounds above; else `error` naming `source`."""
    size = len(data)
    if size > max_bytes:
        raise error(f"{source}: {what} larger than {_size(max_bytes)}, refused")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{source}: {what} is not UTF-8 text (byte {exc.start}: {data[exc.start]:#04x})") from None
    else:
        text = data
    text = text.removeprefix("\ufeff")  # a BOM some editors write; json.loads rejects it
    try:
        obj = json.loads(text, parse_int=_parse_int)
        _check_tree(obj)
    except _Refused as exc:
        raise error(f"{source}: {what} refused: {exc}") from None
    except RecursionError:
        raise error(f"{source}: {what} refused: nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise error(f"{source}: {what} is malformed JSON ({exc})") from None
    except ValueError as exc:  # an int past sys.get_int_max_str_digits(), say
        raise error(f"{source}: {what} refused ({str(exc).splitlines()[0]})") from None
    return obj


def read_json(path: str | Path, what: str = "JSON file", *, max_bytes: int = MAX_JSON_BYTES,
              error: type[UrrlError] = CheckpointError) -> Any:
    """The JSON file at `path`, read no further than `max_bytes` + 1 (so a huge file is refused unread)."""
    path = Path(path)
    return parse_json(read_bytes(path, what, max_bytes=max_bytes, error=error), path, what,
                      max_bytes=max_bytes, error=error)


def read_bytes(path: str | Path, what: str = "file", *, max_bytes: int = MAX_JSON_BYTES,
               error: type[UrrlError] = CheckpointError) -> bytes:
    """At most `max_bytes` of the file at `path` (`error` naming it when it is larger or unreadable)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or type(exc).__name__})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: {what} larger than {_size(max_bytes)}, refused")
    return data


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB" if n >= 1 << 10 else f"{n} bytes"


__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "MAX_JSON_BYTES", "parse_json", "read_bytes", "read_json"]
