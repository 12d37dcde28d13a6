"""Byte-exact round trips of arbitrary unicode through a real influxd: what we encode is what it stores."""

from __future__ import annotations

import itertools
import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from homeiq_daemon.sinks.lineparse import parse_line
from homeiq_daemon.sinks.lineprotocol import LineEncoder, Point
from homeiq_daemon.sinks.lpnames import unsanitize
from tests.support.influxd import InfluxServer

_dbs = itertools.count(1)

names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
strings = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
values = st.one_of(st.floats(allow_nan=False, allow_infinity=False), strings, st.booleans(),
                   st.integers(min_value=-(2**63), max_value=2**63 - 1))
points = st.builds(
    Point,
    measurement=names,
    tags=st.dictionaries(names, names, max_size=3),
    fields=st.dictionaries(names, values, min_size=1, max_size=3),
    time_ns=st.just(0),
)


def _same(stored: object, sent: object) -> bool:
    if isinstance(sent, bool | str):
        return stored == sent
    if isinstance(sent, float):
        return isinstance(stored, int | float) and not isinstance(stored, bool) and float(stored) == sent
    return stored == sent


@given(batch=st.lists(points, min_size=1, max_size=4))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
def test_arbitrary_unicode_round_trips_through_influxd(influxd_server: InfluxServer, batch: list[Point]) -> None:
    encoder = LineEncoder()
    lines = []
    expected = []
    for index, point in enumerate(batch):
        line = encoder.encode(Point(point.measurement, point.tags, point.fields, index + 1))
        assume(line is not None)
        assert line is not None
        parsed = parse_line(line)
        # A tag and a field of the same name come back as "k" and "k_1": not what this test is about.
        assume(not set(parsed.tags) & set(parsed.fields))
        lines.append(line)
        expected.append(parsed)
    # Each point in a database of its own: keys shared between measurements confuse a multi-measurement
    # SELECT (a tag here, a field there), which is about InfluxQL, not the encoding.
    for line, want in zip(lines, expected, strict=True):
        db = f"rt{next(_dbs)}"
        influxd_server.create_database(db)
        status, text = influxd_server.write(line.encode() + b"\n", db)
        assert status == 204, text
        rows = influxd_server.rows("SELECT * FROM /.*/ GROUP BY *", db)
        assert len(rows) == 1
        row = rows[0]
        assert row["_measurement"] == want.measurement
        for key, value in want.tags.items():
            assert row[key] == value
        for key, value in want.fields.items():
            assert _same(row[key], value), (key, row[key], value)
        influxd_server.query(f'DROP DATABASE "{db}"')


def test_documented_replacements_are_what_influxd_stores(influxd_server: InfluxServer, influx_db: str) -> None:
    """Names InfluxDB cannot carry get U+FFFD in the documented places; string values keep everything."""
    point = Point("#temp\nroom", {"loc\\": "a\tb"}, {"note": 'line1\nline2\r\x00"q"\\', "time": 1.5}, 7)
    line = LineEncoder().encode(point)
    assert line is not None
    status, text = influxd_server.write(line.encode() + b"\n", influx_db)
    assert status == 204, text
    rows = influxd_server.rows("SELECT * FROM /.*/ GROUP BY *", influx_db)
    assert len(rows) == 1
    row = rows[0]
    assert row["_measurement"] == "\ufffd23;temp\ufffdA;room"
    assert row["loc\ufffd5C;"] == "a\ufffd9;b"
    assert row["note"] == 'line1\nline2\r\x00"q"\\'
    assert math.isclose(row["time_"], 1.5)


def test_names_that_used_to_collide_are_two_fields_and_two_tags(influxd_server: InfluxServer, influx_db: str) -> None:
    """``\\x1f`` and ``\\x1e`` both became U+FFFD: a duplicate field key influxd refused as a type conflict."""
    point = Point("m", {"t\x1f": "a", "t\x1e": "b", "t\ufffd": "c"}, {"\x1f": 0.0, "\x1e": "", "\ufffd": True}, 9)
    line = LineEncoder().encode(point)
    assert line is not None
    status, text = influxd_server.write(line.encode() + b"\n", influx_db)
    assert status == 204, text
    [row] = influxd_server.rows("SELECT * FROM /.*/ GROUP BY *", influx_db)
    stored = {unsanitize(k): v for k, v in row.items() if k not in ("_measurement", "time")}
    assert {k: stored[k] for k in ("\x1f", "\x1e", "\ufffd")} == {"\x1f": 0.0, "\x1e": "", "\ufffd": True}
    assert {k: stored[k] for k in ("t\x1f", "t\x1e", "t\ufffd")} == {"t\x1f": "a", "t\x1e": "b", "t\ufffd": "c"}


nasty = st.lists(st.sampled_from(["\x00", "\x1e", "\x1f", "\n", "\\", ",", "=", " ", "\ufffd", "#", "a", '"',
                                  "time", "_", "A;", "1F;"]), min_size=1, max_size=4).map("".join)


@given(keys=st.lists(nasty, min_size=2, max_size=5, unique=True), measurement=nasty)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
def test_distinct_keys_stay_distinct_through_influxd(influxd_server: InfluxServer, keys: list[str],
                                                     measurement: str) -> None:
    fields = {key: float(i) for i, key in enumerate(keys)}
    line = LineEncoder().encode(Point(measurement, {}, fields, 1))
    assert line is not None
    db = f"keys{next(_dbs)}"
    influxd_server.create_database(db)
    try:
        status, text = influxd_server.write(line.encode() + b"\n", db)
        assert status == 204, text
        [row] = influxd_server.rows("SELECT * FROM /.*/", db)
        assert unsanitize(row.pop("_measurement")) == measurement
        row.pop("time")
        back = {}
        for key, value in row.items():
            original = unsanitize(key)
            if original.startswith("time") and not original.strip("_").removeprefix("time"):
                original = original[:-1]  # rename_reserved added one underscore
            back[original] = value
        assert back == fields
    finally:
        influxd_server.query(f'DROP DATABASE "{db}"')
