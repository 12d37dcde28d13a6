"""Query parameters of the local HTTP API: parsed and bounded here, so a bad one is a 400, never a 500.

Pure code. Every function raises BadRequest with a message meant for the caller.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterable, Mapping

from homeiq_daemon.runtime.timeparse import TimeParseError, parse_time_ns

DEFAULT_LIMIT = 100
MAX_TEXT = 255
MAX_QUERY_TEXT = 100
MAX_CURSOR = 400

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"^\d{1,18}$")


class BadRequest(ValueError):
    """A parameter the caller must fix (HTTP 400)."""


def check_params(params: Mapping[str, str] | Iterable[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    """One value per known parameter; unknown or repeated parameters are refused (typos do not pass silently)."""
    items = params.items() if isinstance(params, Mapping) else params
    seen: dict[str, str] = {}
    for key, value in items:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise BadRequest(f"unknown parameter {key[:40]!r} (allowed: {known})")
        if key in seen:
            raise BadRequest(f"parameter {key!r} given more than once")
        seen[key] = value
    return seen


def text(params: Mapping[str, str], key: str, limit: int = MAX_TEXT) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if value == "":
        raise BadRequest(f"{key}: must not be empty")
    if len(value) > limit:
        raise BadRequest(f"{key}: longer than {limit} characters")
    if _CONTROL.search(value):
        raise BadRequest(f"{key}: control characters are not allowed")
    return value


def limit(params: Mapping[str, str], maximum: int, default: int = DEFAULT_LIMIT) -> int:
    """A page size: a positive integer; anything above ``maximum`` is served as ``maximum``."""
    raw = params.get("limit")
    if raw is None:
        return min(default, maximum)
    stripped = raw.strip()
    if len(stripped) > 40 or not stripped.isascii() or not stripped.isdigit():
        raise BadRequest("limit: must be a positive integer")
    value = int(stripped) if _DIGITS.match(stripped) else maximum + 1
    if value < 1:
        raise BadRequest("limit: must be at least 1")
    return min(value, maximum)


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def cursor(params: Mapping[str, str]) -> str | None:
    """The opaque cursor of the previous page (the last key it held)."""
    raw = params.get("cursor")
    if raw is None:
        return None
    if not raw or len(raw) > MAX_CURSOR or not raw.isascii():
        raise BadRequest("cursor: not a cursor from a previous page")
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("cursor: not a cursor from a previous page") from None
    if not key or _CONTROL.search(key):
        raise BadRequest("cursor: not a cursor from a previous page")
    return key


def entity_id(value: str) -> str:
    if not 3 <= len(value) <= MAX_TEXT or _CONTROL.search(value):
        raise BadRequest("entity_id: must look like domain.object_id")
    domain, dot, object_id = value.partition(".")
    if not dot or not domain or not object_id:
        raise BadRequest("entity_id: must look like domain.object_id")
    return value


def time_ns(params: Mapping[str, str], key: str, default_ns: int, now_ns: int | None = None) -> int:
    """An ISO 8601 time (UTC when it has no offset), ``now``, or a duration ago: ``90s``, ``15m``, ``24h``, ``7d``."""
    raw = params.get(key)
    if raw is None:
        return default_ns
    try:
        return parse_time_ns(raw, time.time_ns() if now_ns is None else now_ns)
    except TimeParseError as exc:
        raise BadRequest(f"{key}: {exc}") from None
