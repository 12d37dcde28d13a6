"""A line-protocol parser of the tests' own, written from InfluxDB's line protocol reference (not from the
daemon's parser), so an encoder bug the daemon's parser shares cannot hide behind it.

Syntax: ``measurement[,tag=value...] field=value[,field=value...] [timestamp]``. In measurements a backslash
escapes comma and space; in tag keys, tag values and field keys it escapes comma, equals sign and space; in
string field values it escapes the double quote and the backslash. A backslash before any other character is
a literal backslash, and that character is never a separator. Field values: float (``1``, ``-1.5e3``),
integer ``12i``, unsigned ``12u``, boolean (``t T true True TRUE f F false False FALSE``) or a double-quoted
string. Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FieldValue = float | int | bool | str

_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+i")
_UNSIGNED = re.compile(r"\d+u")
_TRUE = {"t", "T", "true", "True", "TRUE"}
_FALSE = {"f", "F", "false", "False", "FALSE"}
_INT64 = (-(2**63), 2**63 - 1)


class LineError(ValueError):
    """An unparsable line; the message names what is wrong."""


@dataclass(frozen=True)
class ParsedPoint:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time_ns: int | None


def _read_token(line: str, pos: int, stops: str, escapable: str) -> tuple[str, int]:
    """Read up to an unescaped character of ``stops``; returns the unescaped text and the stop position."""
    out: list[str] = []
    while pos < len(line):
        char = line[pos]
        if char == "\\" and pos + 1 < len(line):
            # An escape; before any other character the backslash is literal, and that character is part of
            # the token either way (InfluxDB's scanner steps over both).
            nxt = line[pos + 1]
            out.append(nxt if nxt in escapable else char + nxt)
            pos += 2
            continue
        if char in stops:
            break
        out.append(char)
        pos += 1
    return "".join(out), pos


def _field_value(line: str, pos: int) -> tuple[FieldValue, int]:
    if pos < len(line) and line[pos] == '"':
        out: list[str] = []
        pos += 1
        while pos < len(line):
            char = line[pos]
            if char == "\\" and pos + 1 < len(line) and line[pos + 1] in '"\\':
                out.append(line[pos + 1])
                pos += 2
                continue
            if char == '"':
                return "".join(out), pos + 1
            out.append(char)
            pos += 1
        raise LineError("unterminated string field value")
    end = pos
    while end < len(line) and line[end] not in ", ":
        end += 1
    text = line[pos:end]
    if _INTEGER.fullmatch(text):
        number = int(text[:-1])
        if not _INT64[0] <= number <= _INT64[1]:
            raise LineError(f"integer field value out of range: {text}")
        return number, end
    if _UNSIGNED.fullmatch(text):
        return int(text[:-1]), end
    if text in _TRUE:
        return True, end
    if text in _FALSE:
        return False, end
    if _FLOAT.fullmatch(text):
        value = float(text)
        if value in (float("inf"), float("-inf")):
            raise LineError(f"float field value out of range: {text}")
        return value, end
    raise LineError(f"invalid field value {text!r}")


def parse_line(line: str) -> ParsedPoint:
    measurement, pos = _read_token(line, 0, ", ", ", ")
    if not measurement:
        raise LineError("missing measurement")
    tags: dict[str, str] = {}
    while pos < len(line) and line[pos] == ",":
        key, pos = _read_token(line, pos + 1, "=, ", ",= ")
        if pos >= len(line) or line[pos] != "=" or not key:
            raise LineError("missing tag key or value")
        value, pos = _read_token(line, pos + 1, ", =", ",= ")
        if not value:
            raise LineError(f"missing tag value for {key!r}")
        tags[key] = value
    if pos >= len(line) or line[pos] != " ":
        raise LineError("missing fields")
    fields: dict[str, FieldValue] = {}
    pos += 1
    while True:
        key, pos = _read_token(line, pos, "=, ", ",= ")
        if not key or pos >= len(line) or line[pos] != "=":
            raise LineError("missing field key or value")
        value, pos = _field_value(line, pos + 1)
        fields[key] = value
        if pos < len(line) and line[pos] == ",":
            pos += 1
            continue
        break
    time_ns: int | None = None
    if pos < len(line):
        if line[pos] != " ":
            raise LineError(f"unexpected {line[pos]!r} after the fields")
        stamp = line[pos + 1:]
        if not re.fullmatch(r"-?\d+", stamp):
            raise LineError(f"invalid timestamp {stamp!r}")
        time_ns = int(stamp)
    return ParsedPoint(measurement, tags, fields, time_ns)


def parse_body(body: str) -> list[ParsedPoint]:
    """Every line of a write body; raises LineError (with the line number) on the first bad one."""
    points = []
    for number, raw in enumerate(body.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            points.append(parse_line(line))
        except LineError as exc:
            raise LineError(f"line {number}: {exc}") from None
    return points


def parse_lines_lenient(body: str) -> tuple[list[ParsedPoint], list[tuple[int, str]]]:
    """The good points and, per bad line, its number and the reason (as a server taking partial writes)."""
    good: list[ParsedPoint] = []
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(body.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            good.append(parse_line(line))
        except LineError as exc:
            bad.append((number, str(exc)))
    return good, bad
