"""InfluxDB line protocol: the encoder. Pure code, no IO. (The parser is lineparse.py.)

Escaping follows the line protocol reference:

* measurement: comma and space are escaped with a backslash;
* tag keys, tag values, field keys: comma, equals sign and space are escaped;
* string field values: double quote and backslash are escaped; newlines are kept (the value is quoted).

Names (measurement, tag keys/values, field keys) cannot carry every character: lpnames.py replaces those
with an injective escape (U+FFFD, the code point in hex, ``;``), so the point is still written, the
replacement is visible in queries, and two different names never become one. Tag and field keys named
``time`` get an underscore (lpnames.py). Tags with an empty key or value are left out (InfluxDB rejects
them); fields with an empty key are left out. String field values keep every character, control characters
and newlines included (checked byte-exact against influxd).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from homeiq_daemon.sinks.lpnames import rename_reserved, sanitize_key, sanitize_measurement

FieldValue = float | int | bool | str

_NEEDS_WORK_MEASUREMENT = re.compile(r"[, \\\x00-\x1f\x7f\ufffd]|^#")
_NEEDS_WORK_KEY = re.compile(r"[,= \\\x00-\x1f\x7f\ufffd]")
_NEEDS_WORK_STRING = re.compile(r'["\\]')

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\"})

_CACHE_LIMIT = 16_384


def escape_measurement(name: str) -> str:
    """Escape a measurement name (see lpnames.py for characters that are replaced)."""
    if not _NEEDS_WORK_MEASUREMENT.search(name):
        return name
    return sanitize_measurement(name).translate(_MEASUREMENT_ESCAPES)


def escape_key(name: str) -> str:
    """Escape a tag key, tag value or field key."""
    if not _NEEDS_WORK_KEY.search(name):
        return name
    return sanitize_key(name).translate(_KEY_ESCAPES)


def escape_string_value(value: str) -> str:
    """Escape a string field value, without the surrounding quotes."""
    if not _NEEDS_WORK_STRING.search(value):
        return value
    return value.translate(_STRING_ESCAPES)


def format_field_value(value: FieldValue) -> str | None:
    """Render one field value; None for values InfluxDB cannot store (NaN, infinities)."""
    # bool before int: bool is a subclass of int.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return repr(value)
    if isinstance(value, int):
        return f"{value}i"
    return '"' + escape_string_value(value) + '"'


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point. ``fields`` must not be empty for the point to be encodable."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int


class LineEncoder:
    """Encodes points to line protocol, caching the escaped forms of names it has seen.

    Home Assistant names repeat endlessly (a few hundred entities, a few dozen attribute names), so a
    bounded dictionary lookup replaces the regex test on the hot path.
    """

    __slots__ = ("_field_keys", "_keys", "_measurements")

    def __init__(self) -> None:
        self._keys: dict[str, str] = {}
        self._field_keys: dict[str, str] = {}  # tag and field keys: reserved names renamed, then escaped
        self._measurements: dict[str, str] = {}

    def field_key(self, name: str) -> str:
        """A tag or field key: ``time`` renamed (lpnames.rename_reserved), then escaped."""
        escaped = self._field_keys.get(name)
        if escaped is None:
            if len(self._field_keys) >= _CACHE_LIMIT:
                self._field_keys.clear()
            escaped = self._field_keys[name] = escape_key(rename_reserved(name))
        return escaped

    def key(self, name: str) -> str:
        escaped = self._keys.get(name)
        if escaped is None:
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            escaped = self._keys[name] = escape_key(name)
        return escaped

    def measurement(self, name: str) -> str:
        escaped = self._measurements.get(name)
        if escaped is None:
            if len(self._measurements) >= _CACHE_LIMIT:
                self._measurements.clear()
            escaped = self._measurements[name] = escape_measurement(name)
        return escaped

    def series_key(self, measurement: str, tags: Mapping[str, str]) -> str | None:
        """``measurement,tag=value,...`` with tags sorted by key (InfluxDB's canonical order)."""
        m = self.measurement(measurement)
        if not m:
            return None
        parts = [m]
        for tag_key in sorted(tags):
            tag_value = tags[tag_key]
            if not tag_key or not tag_value:
                continue
            k = self.field_key(tag_key)
            v = self.key(tag_value)
            if k and v:
                parts.append(f"{k}={v}")
        return ",".join(parts)

    def fields(self, fields: Mapping[str, FieldValue]) -> str | None:
        parts = []
        for field_key, value in fields.items():
            if not field_key:
                continue
            rendered = format_field_value(value)
            if rendered is None:
                continue
            k = self.field_key(field_key)
            parts.append(f"{k}={rendered}")
        return ",".join(parts) if parts else None

    def encode(self, point: Point) -> str | None:
        """One line without the trailing newline; None when the point has nothing writable."""
        series = self.series_key(point.measurement, point.tags)
        if series is None:
            return None
        fields = self.fields(point.fields)
        if fields is None:
            return None
        return f"{series} {fields} {point.time_ns}"

    def encode_many(self, points: Iterable[Point]) -> bytes:
        lines = [line for line in map(self.encode, points) if line is not None]
        return ("\n".join(lines) + "\n").encode() if lines else b""


def encode_point(point: Point) -> str | None:
    """Encode one point without a shared cache (convenience for tools and tests)."""
    return LineEncoder().encode(point)


# --- parser -------------------------------------------------------------------------------------------
# Used by the embedded history store and the tests: the daemon keeps batches as line protocol (also on
# disk, in the spool), so every sink takes the same bytes.
