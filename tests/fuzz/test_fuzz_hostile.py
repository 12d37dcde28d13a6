"""Fuzzing the three parsers hostile input reaches first: Home Assistant's frames, replay lines, the mapping.

Arbitrary JSON shapes, timestamps of every form and range, huge and pathological strings (digit runs with
dots, the input that made HA's digit-tail pattern backtrack for seconds). Each example has a time budget
(``deadline``): a slow path fails the test as surely as an exception does. What must hold: parsing raises
nothing but ProtocolError, an accepted state has a storable time, and the mapping never raises and gives
one line InfluxDB's grammar accepts (our parser reads it back).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeiq_daemon.config import MappingSettings
from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.model import MAX_TIME_NS, MIN_TIME_NS
from homeiq_daemon.pipeline.mapping import PointMapper
from homeiq_daemon.runtime.stats import Stats
from homeiq_daemon.sinks.lineparse import parse_line
from homeiq_daemon.sources.homeassistant import messages as hamessages
from homeiq_daemon.sources.replay import iter_changes
from tests.support.hypo import examples

# Per example. HA's digit-tail pattern took 1 s at 200 characters and 18 s at 400 on this machine
# (bench/regex.py); the strategies below go to 3,000. Generous enough for a loaded CI machine.
BUDGET = timedelta(seconds=2)

pathological = st.builds(lambda n, tail: "1" * n + tail, st.integers(0, 3000),
                         st.sampled_from([".x.", ".x", ".", "", "..1", "a1", ".1"]))
nasty_text = st.one_of(
    st.text(max_size=40),
    pathological,
    st.text(alphabet="0123456789.\n\x00\x1f\\\",= #\ufffd", max_size=60),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "\\", "\u00e9", "\U0001f600", ",", " "]),
              st.integers(0, 50_000)),
)
timestamps = st.one_of(
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59.999999+00:00", "0001-01-01T00:00:00", "2026-11-20T12:00:00Z",
                     "2026-11-20T12:00:00.123456789+14:00", "2262-04-11T23:47:16.854775+00:00",
                     "1677-09-21T00:12:43.145225+00:00", "", "yesterday", "2026-13-01", "+2026-01-01"]),
    st.text(max_size=30),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), nasty_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(nasty_text, inner, max_size=4)),
                           max_leaves=20)
entity_ids = st.one_of(st.from_regex(r"[a-z_]{1,12}\.[a-z0-9_]{1,20}", fullmatch=True), nasty_text)


@st.composite
def states(draw: st.DrawFn) -> dict[str, Any]:
    state: dict[str, Any] = {"entity_id": draw(entity_ids), "state": draw(st.one_of(nasty_text, json_values)),
                             "attributes": draw(st.one_of(st.dictionaries(nasty_text, json_values, max_size=6),
                                                          json_values)),
                             "last_updated": draw(st.one_of(timestamps, json_values))}
    if draw(st.booleans()):
        state["last_changed"] = draw(st.one_of(timestamps, json_values))
    return state


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    data = {"entity_id": draw(entity_ids), "new_state": draw(st.one_of(states(), json_values))}
    event = {"event_type": draw(st.sampled_from(["state_changed", "call_service", ""])), "data": data}
    message: Any = {"id": draw(st.integers(-5, 10)), "type": "event", "event": event}
    shape = draw(st.sampled_from(["message", "array", "bare", "data", "anything"]))
    value = {"message": message, "array": [message, message], "bare": event, "data": data,
             "anything": draw(json_values)}[shape]
    try:
        return orjson.dumps(value)
    except TypeError:  # a NaN key or the like: orjson refuses, as HA's encoder would
        return b"{}"


def _check_state(raw: Any) -> None:
    try:
        state = hamessages.parse_state(raw)
    except ProtocolError:
        return
    assert MIN_TIME_NS <= state.last_updated_ns <= MAX_TIME_NS
    assert isinstance(state.attributes, dict)


@given(frame=frames())
@settings(max_examples=examples(400), deadline=BUDGET, suppress_health_check=[HealthCheck.too_slow])
def test_frame_parser_raises_only_protocol_errors(frame: bytes) -> None:
    try:
        messages = hamessages.decode_frame(frame)
    except ProtocolError:
        return
    for message in messages:
        data = hamessages.state_changed_data(message)
        if data is None:
            continue
        try:
            change = hamessages.parse_state_changed(data, "live")
        except ProtocolError:
            continue
        if change.new_state is not None:
            assert MIN_TIME_NS <= change.new_state.last_updated_ns <= MAX_TIME_NS
        if isinstance(data, dict):
            _check_state(data.get("new_state"))


@given(lines=st.lists(st.one_of(frames(), st.binary(max_size=200), nasty_text.map(str.encode)), max_size=8))
@settings(max_examples=examples(150), deadline=BUDGET, suppress_health_check=[HealthCheck.too_slow])
def test_replay_reader_skips_and_counts_whatever_a_file_holds(tmp_path_factory: Any, lines: list[bytes]) -> None:
    path: Path = tmp_path_factory.mktemp("replay") / "r.jsonl"
    good = orjson.dumps({"entity_id": "sensor.good", "new_state": {"entity_id": "sensor.good", "state": "1",
                                                                    "last_updated": "2026-11-20T12:00:00+00:00"}})
    path.write_bytes(b"\n".join([*[line.replace(b"\n", b" ") for line in lines], good]) + b"\n")
    stats = Stats()
    changes = list(iter_changes(path, stats))
    assert changes[-1].entity_id == "sensor.good"  # whatever came before, the good last line is read
    for change in changes:
        if change.new_state is not None:
            assert MIN_TIME_NS <= change.new_state.last_updated_ns <= MAX_TIME_NS


@given(raw=states(), config=st.sampled_from([{}, {"tags_attributes": ["friendly_name", "x"]},
                                             {"measurement_attr": "entity_id"},
                                             {"measurement_attr": "domain__device_class"}]))
@settings(max_examples=examples(400), deadline=BUDGET, suppress_health_check=[HealthCheck.too_slow])
def test_mapping_never_raises_and_writes_parseable_lines(raw: dict[str, Any], config: dict[str, Any]) -> None:
    try:
        state = hamessages.parse_state(raw)
    except ProtocolError:
        return
    line = PointMapper(MappingSettings(**config)).map_line(state)
    if line is None:
        return
    parsed = parse_line(line)
    assert parsed.time_ns == state.last_updated_ns
    assert parsed.fields
