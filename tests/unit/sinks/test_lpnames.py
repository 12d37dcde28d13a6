"""Sanitised line-protocol names never collide, and undo to the original."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.sinks.lineparse import parse_line
from homeiq_daemon.sinks.lineprotocol import LineEncoder, Point
from homeiq_daemon.sinks.lpnames import rename_reserved, sanitize_key, sanitize_measurement, unsanitize

# The characters the sanitiser cares about, the escape's own alphabet, and anything else.
parts = st.sampled_from(["\x00", "\x1e", "\x1f", "\x7f", "\n", "\\", ",", "=", " ", "\ufffd", "#", "a", "F", "1", '"',
                         ";", "time", "_"])
names = st.one_of(st.lists(parts, max_size=6).map("".join), st.text(max_size=8))


@given(a=names, b=names)
@settings(max_examples=2000)
def test_sanitising_is_injective_and_reversible(a: str, b: str) -> None:
    for sanitize in (sanitize_key, sanitize_measurement):
        assert unsanitize(sanitize(a)) == a
        if a != b:
            assert sanitize(a) != sanitize(b)
    if a != b:
        assert rename_reserved(a) != rename_reserved(b)


@given(keys=st.lists(names.filter(bool), min_size=1, max_size=6, unique=True))
@settings(max_examples=500)
def test_distinct_field_and_tag_keys_stay_distinct_in_the_line(keys: list[str]) -> None:
    fields = {key: float(i) for i, key in enumerate(keys)}
    tags = {key: f"v{i}" for i, key in enumerate(keys)}
    line = LineEncoder().encode(Point("m", tags, fields, 1))
    assert line is not None
    parsed = parse_line(line)
    assert len(parsed.fields) == len(keys)
    assert len(parsed.tags) == len(keys)


def test_the_reported_collision() -> None:
    line = LineEncoder().encode(Point("m", {}, {"\x1f": 0.0, "\x1e": ""}, 1))
    assert line is not None
    assert parse_line(line).fields == {"\ufffd1F;": 0.0, "\ufffd1E;": ""}


def test_time_keys() -> None:
    assert [rename_reserved(k) for k in ("time", "time_", "time__", "times", "_time")] == [
        "time_", "time__", "time___", "times", "_time"]
