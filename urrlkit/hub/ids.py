"""Hub ids (`hf-hub:org/name[@revision]` or `org/name`) and the Hub settings urrlkit reads per call."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.utils import HFValidationError, validate_repo_id

from urrlkit.errors import HubError

PREFIX = "hf-hub:"
# A Hub repo id is exactly one "/" between two names of letters, digits, "-", "_" and "." (not leading).
_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<rev>[^\s@]+))?")


@dataclass(frozen=True)
class HubId:
    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_hub_id(name: str, revision: str | None = None) -> HubId | None:
    """`hf-hub:org/name[@rev]` or `org/name[@rev]` → HubId; None when `name` has no Hub id's shape.

    An explicit `revision` must agree with one given after "@"."""
    text = str(name).strip().removeprefix(PREFIX)
    m = _ID.fullmatch(text)
    if m is None or ".." in m["repo"]:
        return None
    try:  # huggingface_hub's own rules ("--", a trailing "-" or ".", more than 96 characters, ...)
        validate_repo_id(m["repo"])
    except HFValidationError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "rejected by huggingface_hub"
        raise HubError(f"{name}: not a valid Hub repo id ({reason})") from None
    rev = m["rev"]
    if revision and rev and revision != rev:
        raise HubError(f"{name}: the id names revision {rev!r} but --revision says {revision!r}")
    return HubId(m["repo"], revision or rev)


def require_hub_id(name: str, revision: str | None = None) -> HubId:
    hub_id = parse_hub_id(name, revision)
    if hub_id is None:
        raise HubError(f"{name}: not a Hub id (expected org/name or hf-hub:org/name[@revision])")
    return hub_id


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubSettings:
    endpoint: str | None  # None: huggingface_hub's own default
    cache_dir: Path | None  # None: huggingface_hub's own default cache
    offline: bool


def hub_settings() -> HubSettings:
    """The standard huggingface_hub environment variables, read now.

    huggingface_hub reads HF_ENDPOINT, HF_HUB_OFFLINE and the cache location once, at import; urrlkit passes
    them explicitly on every call instead, so that a process which sets them later (a notebook, a test, a
    long-lived service) gets the endpoint and cache it asked for. Tokens are never read here: the client's own
    login / HF_TOKEN lookup supplies them and urrlkit never sees or stores one."""
    env = os.environ
    endpoint = (env.get("HF_ENDPOINT") or "").rstrip("/") or None
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if cache is None and env.get("HF_HOME"):
        cache = os.path.join(env["HF_HOME"], "hub")
    offline = (_is_true(env.get("HF_HUB_OFFLINE")) or _is_true(env.get("TRANSFORMERS_OFFLINE"))
               or constants.is_offline_mode())
    cache_dir = Path(os.path.expandvars(os.path.expanduser(cache))) if cache else None
    return HubSettings(endpoint, cache_dir, offline)
