"""InfluxDB line protocol: encoder and parser. Pure code, no IO.

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
from collections.abc import Iterable, Iterator, Mapping
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


class LineProtocolError(ValueError):
    """A line that is not valid line protocol."""


@dataclass(frozen=True, slots=True)
class ParsedLine:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int | None


def _split_unescaped(text: str, sep: str, limit: int = -1) -> list[str]:
    """Split at ``sep`` where it is not preceded by a backslash escape; keeps escapes in the parts."""
    parts: list[str] = []
    start = i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            i += 2
            continue
        if ch == sep and (limit < 0 or len(parts) < limit):
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _unescape(text: str, chars: str) -> str:
    if "\\" not in text:
        return text
    out = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in chars:
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _parse_field_value(raw: str) -> FieldValue:
    if raw.startswith('"'):
        if len(raw) < 2 or not raw.endswith('"'):
            raise LineProtocolError(f"unterminated string field value: {raw[:40]!r}")
        body = raw[1:-1]
        out = []
        i = 0
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body) and body[i + 1] in '"\\':
                out.append(body[i + 1])
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith("i"):
        try:
            return int(raw[:-1])
        except ValueError as exc:
            raise LineProtocolError(f"bad integer field value {raw!r}") from exc
    try:
        return float(raw)
    except ValueError as exc:
        raise LineProtocolError(f"bad field value {raw!r}") from exc


def _string_spans(text: str, start: int = 0) -> Iterator[tuple[int, str, bool]]:
    """Walk ``text`` yielding (index, char, inside_string) for every unescaped character.

    A string value opens only at a quote right after an unescaped ``=`` (a quote inside a key is an
    ordinary character, as InfluxDB reads it); inside it, ``\\"`` and ``\\\\`` are escapes.
    """
    quoted = False
    after_equals = False
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            i += 2
            after_equals = False
            continue
        if quoted:
            if ch == '"':
                quoted = False
            yield i, ch, True
        else:
            if ch == '"' and after_equals:
                quoted = True
                yield i, ch, True
            else:
                yield i, ch, False
            after_equals = ch == "="
        i += 1


def _split_fields(text: str) -> list[str]:
    """Split the field set at commas outside string values."""
    parts: list[str] = []
    start = 0
    inside = False
    for i, ch, inside in _string_spans(text):
        if ch == "," and not inside:
            parts.append(text[start:i])
            start = i + 1
    if inside and not text.endswith('"'):
        raise LineProtocolError("unterminated string in field set")
    parts.append(text[start:])
    return parts


def parse_line(line: str) -> ParsedLine:
    """Parse one line of line protocol (as this encoder writes it)."""
    # The series ends at the first unescaped space; the field set at the last space outside quotes.
    series, sep, rest = _split_series(line)
    if not sep:
        raise LineProtocolError(f"no field set in line: {line[:60]!r}")
    fields_text, time_text = _split_timestamp(rest)
    parts = _split_unescaped(series, ",")
    measurement = _unescape(parts[0], ", ")
    if not measurement:
        raise LineProtocolError("empty measurement")
    tags: dict[str, str] = {}
    for part in parts[1:]:
        kv = _split_unescaped(part, "=", 1)
        if len(kv) != 2:
            raise LineProtocolError(f"bad tag {part!r}")
        tags[_unescape(kv[0], ",= ")] = _unescape(kv[1], ",= ")
    fields: dict[str, FieldValue] = {}
    for part in _split_fields(fields_text):
        kv = _split_unescaped(part, "=", 1)
        if len(kv) != 2 or not kv[0]:
            raise LineProtocolError(f"bad field {part[:40]!r}")
        fields[_unescape(kv[0], ",= ")] = _parse_field_value(kv[1])
    time_ns = None
    if time_text:
        try:
            time_ns = int(time_text)
        except ValueError as exc:
            raise LineProtocolError(f"bad timestamp {time_text!r}") from exc
    return ParsedLine(measurement, tags, fields, time_ns)


def _split_series(line: str) -> tuple[str, str, str]:
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == "\\" and i + 1 < n:
            i += 2
            continue
        if ch == " ":
            return line[:i], " ", line[i + 1 :]
        i += 1
    return line, "", ""


def _split_timestamp(rest: str) -> tuple[str, str]:
    last_space = -1
    for i, ch, inside in _string_spans(rest):
        if ch == " " and not inside:
            last_space = i
    if last_space < 0:
        return rest, ""
    return rest[:last_space], rest[last_space + 1 :]


def parse_lines(body: bytes) -> Iterable[ParsedLine]:
    """Parse a batch body; blank lines and comments are skipped. Newlines inside quoted strings are kept."""
    text = body.decode()
    for line in split_lines(text):
        if line and not line.startswith("#"):
            yield parse_line(line)


def split_lines(text: str) -> list[str]:
    """Split a batch into lines; newlines inside string values do not end a line."""
    if '"' not in text:
        return text.split("\n")
    lines = []
    start = 0
    pos = 0
    n = len(text)
    while pos < n:
        # The series part (up to the first unescaped space) cannot hold a string value.
        end = pos
        while end < n and text[end] not in " \n":
            end += 2 if text[end] == "\\" else 1
        if end >= n or text[end] == "\n":
            lines.append(text[start:end])
            start = pos = end + 1
            continue
        line_end = n
        for i, ch, inside in _string_spans(text, end):
            if ch == "\n" and not inside:
                line_end = i
                break
        lines.append(text[start:line_end])
        start = pos = line_end + 1
    if start <= n and (not lines or start == n):
        lines.append(text[start:])
    return lines
