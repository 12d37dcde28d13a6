"""The one parser of points in time that people type: on the command line (``--since 7d``) and in API
parameters (``?start=24h``). Pure code.

Accepted: ``now``; a duration ago (``90s``, ``15m``, ``1.5h``, ``7d``, ``2w``); an ISO 8601 time (UTC when
it has no offset). Bounded: at most 40 characters, at most 9 digits before the decimal point.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DURATION = re.compile(r"^(\d{1,9}(?:\.\d{1,6})?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_MAX_CHARS = 40
NS = 1_000_000_000


class TimeParseError(ValueError):
    """The text is not a time; the message says what is accepted (never echoing a long input)."""


def parse_time_ns(text: str, now_ns: int) -> int:
    """``text`` as nanoseconds since the epoch; durations count back from ``now_ns``."""
    value = text.strip()
    if value == "now":
        return now_ns
    match = _DURATION.match(value)
    if match:
        return now_ns - int(float(match.group(1)) * _UNIT_S[match.group(2)] * NS)
    if len(value) > _MAX_CHARS:
        raise TimeParseError("use an ISO 8601 time or a duration like 24h")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise TimeParseError("use an ISO 8601 time or a duration like 24h") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return int(parsed.timestamp() * 1_000_000) * 1000
    except (OverflowError, OSError, ValueError):
        raise TimeParseError("out of range") from None
