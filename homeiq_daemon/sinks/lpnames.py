"""Names in line protocol (measurements, tag keys and values, field keys): an injective sanitiser. Pure code.

Line protocol has no escape for some characters in names, so they are replaced, and the replacement must
never make two different names equal (two field keys that collide are a duplicate key, which InfluxDB
refuses as a field type conflict; two tags that collide merge two series). Each character that cannot be
carried becomes ``U+FFFD`` + its code point in upper-case hex + ``;`` (``"\\x1f"`` -> ``"\\ufffd1F;"``):

* control characters (U+0000-U+001F, U+007F);
* a backslash that ends the name or stands before a separator (``,`` ``=`` space; ``,`` space in a
  measurement): InfluxDB would read it as the start of an escape and split the line in the wrong place;
  also one before ``"``, which influxd 1.6 reads as an escaped quote in field keys and measurements (so
  ``\\"`` and ``"`` would become one name);
* a ``#`` at the start of a measurement (InfluxDB reads the line as a comment);
* U+FFFD itself, so that every U+FFFD in a stored name starts such a sequence and ``unsanitize`` undoes it.

Tag and field keys named ``time`` (which InfluxDB drops) get an underscore, and so does every key made of
``time`` and underscores (``time_`` -> ``time__``), so the renaming cannot collide either.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

_KEY_BAD = re.compile(r"[\x00-\x1f\x7f\ufffd]|\\(?=[,= \"]|\Z)")
_MEASUREMENT_BAD = re.compile(r"[\x00-\x1f\x7f\ufffd]|\\(?=[, \"]|\Z)|\A#")
_ESCAPED = re.compile("\ufffd([0-9A-F]{1,6});")
_TIME_KEY = re.compile(r"time_*")


def _code(match: re.Match[str]) -> str:
    return f"{REPLACEMENT}{ord(match.group()):X};"


def sanitize_key(name: str) -> str:
    """A tag key, tag value or field key InfluxDB can carry (before the ``\\,`` ``\\=`` ``\\ `` escapes)."""
    return _KEY_BAD.sub(_code, name)


def sanitize_measurement(name: str) -> str:
    return _MEASUREMENT_BAD.sub(_code, name)


def unsanitize(name: str) -> str:
    """The original name of a sanitised one (what a reader of the database does to get it back)."""
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), name) if REPLACEMENT in name else name


def rename_reserved(key: str) -> str:
    """``time`` -> ``time_``, ``time_`` -> ``time__``, …: InfluxDB drops points with a key named ``time``."""
    return key + "_" if _TIME_KEY.fullmatch(key) else key
