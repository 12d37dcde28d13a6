"""subscribe_entities: states rebuilt from compressed diffs equal the full states of state_changed events,
and map to the same points."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.config import MappingSettings
from homeiq_daemon.pipeline.mapping import PointMapper
from homeiq_daemon.sources.homeassistant.compressed import EntityStream, stamp
from homeiq_daemon.sources.homeassistant.messages import parse_state
from tests.support.fake_ha import compressed_state, entity_diff_event

BASE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _state(entity_id: str, value: str, attrs: dict[str, Any], updated: datetime, changed: datetime,
           context: str = "01HCTX") -> dict[str, Any]:  # fmt: skip
    return {"entity_id": entity_id, "state": value, "attributes": attrs, "last_changed": changed.isoformat(),
            "last_updated": updated.isoformat(), "context": {"id": context, "parent_id": None, "user_id": None}}


def test_timestamps_are_exact_to_the_microsecond() -> None:
    for micros in (0, 1, 499_999, 500_000, 999_999, 123_457):
        moment = BASE.replace(microsecond=micros)
        text, ns = stamp(moment.timestamp())
        assert text == moment.isoformat()  # the text HA's events carry (no fraction when it is zero)
        assert ns == int(moment.timestamp() * 1_000_000 + 0.5) * 1000 or ns % 1000 == 0
        assert ns == ((moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)) * 1000


def test_malformed_diffs_are_skipped_and_named() -> None:
    stream = EntityStream()
    stream.initial({"a": {"sensor.a": {"s": "1", "a": {}, "c": "x", "lc": BASE.timestamp()}, "bad": {"s": 1}}})
    assert len(stream) == 1
    assert stream.malformed
    assert stream.changes({"c": {"sensor.zzz": {"+": {"s": "2"}}}}) == []
    assert "unknown entity" in stream.malformed[0]
    assert stream.changes({"c": {"sensor.a": {"+": {"lu": "soon"}}}}) == []
    assert "not a number" in stream.malformed[0]


_values = st.one_of(st.integers(-5, 5), st.floats(allow_nan=False, allow_infinity=False, width=32),
                    st.sampled_from(["on", "off", "12.5 W", "x"]), st.lists(st.integers(0, 3), max_size=2))  # fmt: skip
_attrs = st.dictionaries(st.sampled_from(["brightness", "unit_of_measurement", "friendly_name", "rgb", "value"]),
                         _values, max_size=4)  # fmt: skip
_step = st.tuples(
    st.sampled_from(["sensor.a", "light.b", "switch.c"]),
    st.one_of(st.none(), st.sampled_from(["1.5", "on", "off", "unavailable", "7"])),  # None: removed
    _attrs,
    st.integers(0, 3),  # seconds after the previous change
    st.integers(0, 999_999),  # microseconds
    st.booleans(),  # the state's last_changed moves too
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(_step, max_size=25))
def test_rebuilt_states_equal_full_states(steps: list[Any]) -> None:
    states = {"sensor.a": _state("sensor.a", "1", {"unit_of_measurement": "W"}, BASE, BASE)}
    stream = EntityStream()
    stream.initial({"a": {eid: compressed_state(s) for eid, s in states.items()}})
    mapper = PointMapper(MappingSettings())
    now = BASE
    for n, (entity_id, value, attrs, seconds, micros, moves) in enumerate(steps):
        now = now.replace(microsecond=0) + timedelta(seconds=seconds + 1, microseconds=micros)
        old = states.get(entity_id)
        if value is None:
            if old is None:
                continue
            new = None
            del states[entity_id]
        else:
            changed = now if old is None or moves or old["state"] != value else datetime.fromisoformat(
                old["last_changed"])
            new = states[entity_id] = _state(entity_id, value, attrs, now, changed, f"ctx{n}")
        changes = stream.changes(entity_diff_event({"entity_id": entity_id, "old_state": old, "new_state": new}))
        assert stream.malformed == []
        assert len(changes) == 1
        got = changes[0].new_state
        if new is None:
            assert got is None
            continue
        assert got is not None
        expected = parse_state(new)
        assert got == expected
        line, want = mapper.map_line(got), mapper.map_line(expected)
        if line is None or want is None:
            assert line == want
            continue
        # The same point: series, fields (a diff keeps the old order of unchanged attribute names), time.
        assert _point(line) == _point(want)


_SERIES_END = re.compile(r"(?<!\\) ")
_FIELD = re.compile(r'(?:[^,"]|"(?:[^"\\]|\\.)*")+')


def _point(line: str) -> tuple[str, list[str], str]:
    """(series, fields in name order, timestamp) of one line of line protocol."""
    rest, _, ts = line.rpartition(" ")
    series, fields = _SERIES_END.split(rest, maxsplit=1)
    return series, sorted(_FIELD.findall(fields)), ts
