"""The Home Assistant message parser: valid frames, coalesced frames, and arbitrary garbage."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.model import iso_to_ns
from homeiq_daemon.sources.homeassistant import messages as hamessages
from tests.support import oracle
from tests.support.hypo import examples

STATE = {"entity_id": "sensor.t", "state": "1", "attributes": {"unit_of_measurement": "°C"},
         "last_changed": "2026-11-20T12:00:00+00:00", "last_updated": "2026-11-20T12:00:01.5+00:00"}


def test_single_and_coalesced_frames() -> None:
    one = {"id": 3, "type": "pong"}
    assert hamessages.decode_frame(orjson.dumps(one)) == [one]
    assert hamessages.decode_frame(orjson.dumps([one, one]).decode()) == [one, one]


@pytest.mark.parametrize("frame", [b"", b"nul", b"[1]", b'"x"', b"42", b"{", "\udcff".encode("utf-8", "surrogatepass")])
def test_bad_frames_raise_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        hamessages.decode_frame(frame)


def test_state_changed_parses_new_state_with_exact_time() -> None:
    change = hamessages.parse_state_changed({"entity_id": "sensor.t", "new_state": STATE, "old_state": None})
    assert change.new_state is not None
    assert change.new_state.last_updated_ns == 1_795_176_001_500_000_000
    assert change.new_state.last_updated_ns == iso_to_ns("2026-11-20T12:00:01.500000Z")
    removed = hamessages.parse_state_changed({"entity_id": "sensor.t", "new_state": None, "old_state": STATE})
    assert removed.new_state is None


@pytest.mark.parametrize("patch", [
    {"entity_id": "nodot"}, {"entity_id": ".x"}, {"entity_id": 5}, {"state": 1}, {"attributes": []},
    {"last_updated": None}, {"last_updated": "not a time"}, {"entity_id": "a." + "x" * 300},
])
def test_bad_states_are_rejected(patch: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        hamessages.parse_state({**STATE, **patch})


def test_recording_forms() -> None:
    data = {"entity_id": "sensor.t", "new_state": STATE}
    assert hamessages.state_changed_data({"id": 1, "type": "event",
                                         "event": {"event_type": "state_changed", "data": data}}) == data
    assert hamessages.state_changed_data({"event_type": "state_changed", "data": data}) == data
    assert hamessages.state_changed_data(data) == data
    assert hamessages.state_changed_data({"event_type": "call_service", "data": {}}) is None


def test_commands_are_text_with_increasing_ids() -> None:
    ids = hamessages.CommandIds()
    assert [ids.take(), ids.take(), ids.take()] == [1, 2, 3]
    assert orjson.loads(hamessages.subscribe_events(4, "state_changed")) == {
        "id": 4, "type": "subscribe_events", "event_type": "state_changed"}
    assert isinstance(hamessages.auth("t"), str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _frame_expectation(decoded: object) -> list[object] | None:
    """What decode_frame must return for a frame the standard JSON reader reads as ``decoded`` (None: refuse)."""
    if isinstance(decoded, dict):
        return [decoded]
    if isinstance(decoded, list) and all(isinstance(item, dict) for item in decoded):
        return decoded
    return None


@given(json_values, st.booleans())
@settings(max_examples=examples(500), deadline=timedelta(seconds=2))  # a slow path in the frame decoder is a bug
def test_frames_decode_to_what_the_standard_json_reader_reads(value: object, ascii_only: bool) -> None:
    frame = json.dumps(value, ensure_ascii=ascii_only).encode()
    expected = _frame_expectation(json.loads(frame))
    if expected is None:
        with pytest.raises(ProtocolError):
            hamessages.decode_frame(frame)
    else:
        assert hamessages.decode_frame(frame) == expected


@given(st.binary(max_size=200))
@settings(max_examples=examples(500), deadline=timedelta(seconds=2))
def test_arbitrary_bytes_are_refused_or_read_as_the_standard_reader_reads_them(data: bytes) -> None:
    try:
        messages = hamessages.decode_frame(data)
    except ProtocolError:
        return
    assert messages == _frame_expectation(json.loads(data))


@given(json_values)
@settings(max_examples=examples(500), deadline=timedelta(seconds=2))
def test_arbitrary_json_state_changed_is_parsed_or_refused_cleanly(data: object) -> None:
    try:
        change = hamessages.parse_state_changed(data)
    except ProtocolError:
        return
    assert isinstance(data, dict)
    new = data.get("new_state")
    if isinstance(data.get("entity_id"), str):
        assert change.entity_id == data["entity_id"]
    else:
        assert isinstance(new, dict)
        assert change.entity_id == new["entity_id"]
    if new is None:
        assert change.new_state is None
    else:
        assert change.new_state is not None
        assert change.new_state.state == new["state"]
        assert change.new_state.attributes == new.get("attributes", {})


_ISO = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)).map(
    lambda moment: moment.isoformat())


@given(st.fixed_dictionaries({"entity_id": st.one_of(st.text(max_size=20), st.just("sensor.kitchen")),
                              "state": st.text(max_size=20),
                              "attributes": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
                              "last_updated": st.one_of(st.text(max_size=40), _ISO)}))
@settings(max_examples=examples(500), deadline=timedelta(seconds=2))
def test_hostile_state_objects(obj: dict[str, Any]) -> None:
    entity_id, last_updated = obj["entity_id"], obj["last_updated"]
    domain, dot, object_id = entity_id.partition(".")
    well_formed_id = 2 < len(entity_id) <= 255 and bool(dot and domain and object_id)
    try:
        state = hamessages.parse_state(obj)
    except ProtocolError:
        # Refused only for a reason the parser documents: an id that is not domain.object_id, or a time
        # that is not ISO 8601.
        assert not well_formed_id or not _is_iso(last_updated), obj
        return
    assert well_formed_id
    assert (state.entity_id, state.domain, state.object_id) == (entity_id, domain, object_id)
    assert (state.state, state.attributes, state.last_updated) == (obj["state"], obj["attributes"], last_updated)
    moment = datetime.fromisoformat(last_updated)
    if moment.tzinfo is not None:
        assert state.last_updated_ns == oracle.iso_ns(last_updated)


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
