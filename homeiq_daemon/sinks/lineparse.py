"""InfluxDB line protocol: the parser (the embedded store, the dead-letter splitter, tests). Pure code, no IO.

The inverse of lineprotocol.py's encoder, with the same escaping rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from homeiq_daemon.sinks.lineprotocol import FieldValue


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
