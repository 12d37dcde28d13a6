"""Line protocol encoder and parser: spec cases, round trips, and agreement with influxdb_client.Point."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from influxdb_client import Point as ClientPoint
from influxdb_client import WritePrecision

from homeiq_daemon.sinks.lineparse import LineProtocolError, parse_line, parse_lines, split_lines
from homeiq_daemon.sinks.lineprotocol import (
    LineEncoder,
    Point,
    encode_point,
    escape_key,
    escape_measurement,
    escape_string_value,
)
from homeiq_daemon.sinks.lpnames import REPLACEMENT, rename_reserved
from tests.support.hypo import examples


def test_measurement_escapes_comma_and_space_only() -> None:
    assert escape_measurement("a,b c=d") == r"a\,b\ c=d"


def test_keys_escape_comma_equals_space() -> None:
    assert escape_key("a,b c=d") == r"a\,b\ c\=d"


def test_string_values_escape_quote_and_backslash_keep_newline() -> None:
    assert escape_string_value('say "hi"\\\nbye') == 'say \\"hi\\"\\\\\nbye'


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("line\nbreak", f"line{REPLACEMENT}A;break"),
        ("tab\there", f"tab{REPLACEMENT}9;here"),
        ("trailing\\", f"trailing{REPLACEMENT}5C;"),
        ("back\\,comma", f"back{REPLACEMENT}5C;\\,comma"),
        (f"has{REPLACEMENT}", f"has{REPLACEMENT}FFFD;"),
        ("back\\slash", "back\\slash"),  # a backslash before an ordinary character is literal
    ],
)
def test_unrepresentable_name_characters_are_replaced(name: str, expected: str) -> None:
    assert escape_key(name) == expected


def test_measurement_starting_with_hash_is_not_a_comment() -> None:
    assert escape_measurement("#count") == f"{REPLACEMENT}23;count"
    assert escape_measurement("a#b") == "a#b"


def test_full_line_format() -> None:
    point = Point("°C", {"entity_id": "kitchen", "domain": "sensor"},
                  {"value": 21.5, "friendly_name_str": "Kitchen", "on": True, "n": 3}, 1_700_000_000_123_456_000)
    assert encode_point(point) == (
        '°C,domain=sensor,entity_id=kitchen value=21.5,friendly_name_str="Kitchen",on=true,n=3i 1700000000123456000'
    )


def test_empty_tags_and_fields_are_dropped_and_time_keys_renamed() -> None:
    point = Point("m", {"": "x", "k": "", "ok": "1", "time": "t"}, {"": 1.0, "time": 2.0, "nan": math.nan}, 5)
    assert encode_point(point) == "m,ok=1,time_=t time_=2.0 5"


def test_point_without_writable_fields_encodes_to_none() -> None:
    assert encode_point(Point("m", {}, {"x": math.inf}, 1)) is None


def test_encode_many_and_split_lines_keep_newlines_inside_strings() -> None:
    encoder = LineEncoder()
    body = encoder.encode_many([Point("m", {}, {"s": "a\nb"}, 1), Point("m", {}, {"v": 1.0}, 2)])
    lines = split_lines(body.decode())
    assert [line for line in lines if line] == ['m s="a\nb" 1', "m v=1.0 2"]
    parsed = list(parse_lines(body))
    assert parsed[0].fields == {"s": "a\nb"}


def test_parser_rejects_garbage() -> None:
    with pytest.raises(LineProtocolError):
        parse_line("no_fields_here")
    with pytest.raises(LineProtocolError):
        parse_line('m s="unterminated 1')


# --- properties ---------------------------------------------------------------------------------------


def not_reserved(key: str) -> bool:
    """Keys the encoder renames (``time``, ``time_``, …: see lpnames.rename_reserved) are tested there."""
    return rename_reserved(key) == key


# Names without the characters the encoder must replace: these round-trip exactly through our parser.
representable = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\\\x7f\ufffd"
                           + "".join(chr(c) for c in range(32))),
    min_size=1, max_size=20,
).filter(lambda s: not s.startswith("#"))
any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
finite = st.floats(allow_nan=False, allow_infinity=False)
field_values = st.one_of(finite, any_text, st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1))


not_time = representable.filter(not_reserved)


@given(measurement=representable, tags=st.dictionaries(not_time, representable, max_size=4),
       fields=st.dictionaries(representable.filter(not_reserved), field_values, min_size=1, max_size=4),
       time_ns=st.integers(min_value=0, max_value=2**62))
@settings(max_examples=examples(300), deadline=None)
def test_encode_then_parse_round_trips(measurement: str, tags: dict[str, str], fields: dict[str, object],
                                       time_ns: int) -> None:
    line = encode_point(Point(measurement, tags, fields, time_ns))  # type: ignore[arg-type]
    assert line is not None
    parsed = parse_line(line)
    assert parsed.measurement == measurement
    assert parsed.tags == tags
    assert parsed.fields == fields
    assert parsed.time_ns == time_ns


@given(name=any_text)
@settings(max_examples=examples(300))
def test_escaped_names_never_contain_raw_separators_or_controls(name: str) -> None:
    escaped = escape_key(name)
    assert "\n" not in escaped
    assert not any(ord(c) < 32 for c in escaped)
    # Every separator is escaped and no backslash can swallow the next separator.
    i = 0
    while i < len(escaped):
        if escaped[i] == "\\":
            i += 2
            continue
        assert escaped[i] not in ", ="
        i += 1


client_names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\\ufffd"), min_size=1, max_size=15
).filter(lambda s: not s.startswith("#"))


@given(measurement=client_names, tags=st.dictionaries(client_names.filter(not_reserved), client_names,
                                                     max_size=3),
       fields=st.dictionaries(client_names.filter(not_reserved),
                              st.one_of(finite, st.text(max_size=20),
                                        st.booleans(), st.integers(min_value=-(2**62), max_value=2**62)),
                              min_size=1, max_size=3),
       time_ns=st.integers(min_value=0, max_value=2**62))
@settings(max_examples=examples(300), deadline=None)
def test_agrees_with_influxdb_client_point(measurement: str, tags: dict[str, str], fields: dict[str, object],
                                           time_ns: int) -> None:
    """Where both encoders define the output, both lines mean the same point (floats may differ in spelling:
    the client writes 1.0 as ``1``)."""
    ours = encode_point(Point(measurement, tags, fields, time_ns))  # type: ignore[arg-type]
    client = ClientPoint(measurement)
    for k, v in tags.items():
        client.tag(k, v)
    for k, v in fields.items():
        client.field(k, v)
    client.time(time_ns, WritePrecision.NS)
    theirs = client.to_line_protocol()
    assert ours is not None
    assert parse_line(ours) == parse_line(theirs)
