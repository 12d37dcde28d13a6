"""The typed decoder for state_changed frames: for every frame it accepts, exactly what the general path
(decode_frame + parse_state_changed) makes of it; every other frame is left to the general path."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.model import StateChange
from homeiq_daemon.sources.homeassistant import messages as hamessages
from tests.support.hypo import examples
from tests.unit.sources.test_ha_messages import json_values

_MISSING = object()


def general_path(frame: bytes) -> list[tuple[int, StateChange]] | None:
    """What the reader's general path hands to a state_changed subscription for this frame (None: it does not,
    wholly: a malformed frame, another message, another event)."""
    try:
        messages = hamessages.decode_frame(frame)
    except ProtocolError:
        return None
    out = []
    for message in messages:
        msg_id, event = message.get("id"), message.get("event")
        if message.get("type") != "event" or type(msg_id) is not int or not isinstance(event, dict):
            return None
        if event.get("event_type") != "state_changed":
            return None
        try:
            out.append((msg_id, hamessages.parse_state_changed(event.get("data"))))
        except ProtocolError:
            return None
    return out


def exact(changes: list[tuple[int, StateChange]] | None) -> object:
    """Equality that also tells 1, 1.0 and True apart (dict equality does not)."""
    if changes is None:
        return None
    return [(i, c.entity_id, c.origin, None if c.new_state is None else (
        c.new_state.entity_id, c.new_state.state, orjson.dumps(c.new_state.attributes), c.new_state.last_changed,
        c.new_state.last_updated, c.new_state.last_updated_ns)) for i, c in changes]


def _maybe(good: st.SearchStrategy[Any], bad_weight: int = 1) -> st.SearchStrategy[Any]:
    """Mostly a well-formed value; sometimes any JSON value, sometimes the key is missing."""
    return st.one_of(*[good] * 4, *[json_values] * bad_weight, st.just(_MISSING))


_ENTITY_IDS = st.sampled_from(["sensor.kitchen", "light.hall", "x.y", "ab", "nodot", ".x", "a.", "a." + "x" * 300,
                               "sensor.\u00e9\u0000\"\\"])
_TIMES = st.sampled_from(["2026-11-20T12:00:00.002000+00:00", "2026-11-20T12:00:01+02:00", "2026-11-20T12:00:00",
                          "1600-01-01T00:00:00+00:00", "not a time", ""])
_ATTRIBUTES = st.dictionaries(st.text(max_size=6), json_values, max_size=4) | st.sampled_from(
    [{"unit_of_measurement": "W", "friendly_name": "Plug"}, {}])


def _drop_missing(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not _MISSING}


_STATE = st.fixed_dictionaries({
    "entity_id": _maybe(_ENTITY_IDS), "state": _maybe(st.sampled_from(["21.5", "on", "", "unknown", "x\ny"])),
    "attributes": _maybe(_ATTRIBUTES), "last_changed": _maybe(_TIMES), "last_updated": _maybe(_TIMES),
    "last_reported": _maybe(_TIMES), "context": _maybe(st.just({"id": "01HR", "parent_id": None})),
}).map(_drop_missing)
_DATA = st.fixed_dictionaries({
    "entity_id": _maybe(_ENTITY_IDS), "old_state": _maybe(_STATE | st.none()),
    "new_state": _maybe(_STATE | st.none()),
}).map(_drop_missing)
_EVENT = st.fixed_dictionaries({
    "event_type": _maybe(st.just("state_changed")), "data": _maybe(_DATA), "origin": st.just("LOCAL"),
}).map(_drop_missing)
_MESSAGE = st.fixed_dictionaries({
    "id": _maybe(st.integers(1, 2**31)), "type": _maybe(st.just("event")), "event": _maybe(_EVENT),
}).map(_drop_missing)
_FRAMES = _MESSAGE | st.lists(_MESSAGE, max_size=4)


@given(_FRAMES, st.booleans())
@settings(max_examples=examples(800), deadline=timedelta(seconds=2))
def test_an_accepted_frame_gives_exactly_what_the_general_path_gives(value: object, ascii_only: bool) -> None:
    frame = json.dumps(value, ensure_ascii=ascii_only).encode()
    fast = hamessages.StateChangedDecoder().decode(frame)
    if fast is not None:
        assert exact(fast) == exact(general_path(frame))


@given(st.lists(_MESSAGE, min_size=1, max_size=6))
@settings(max_examples=examples(300), deadline=timedelta(seconds=2))
def test_one_decoder_over_a_stream_agrees_frame_by_frame(messages: list[object]) -> None:
    """The attribute memo carries over from frame to frame; it must never hand out another frame's attributes."""
    decoder = hamessages.StateChangedDecoder()
    for message in messages:
        frame = orjson.dumps(message)
        fast = decoder.decode(frame)
        if fast is not None:
            assert exact(fast) == exact(general_path(frame))


@given(st.binary(max_size=300))
@settings(max_examples=examples(300), deadline=timedelta(seconds=2))
def test_arbitrary_bytes_are_declined_or_agree(data: bytes) -> None:
    fast = hamessages.StateChangedDecoder().decode(data)
    if fast is not None:
        assert exact(fast) == exact(general_path(data))


def _event(msg_id: int, entity_id: str, state: str, attributes: dict[str, Any], second: int) -> dict[str, Any]:
    stamp = f"2026-11-20T12:00:{second:02d}.000000+00:00"
    new = {"entity_id": entity_id, "state": state, "attributes": attributes, "last_changed": stamp,
           "last_updated": stamp, "context": {"id": "01HR", "parent_id": None, "user_id": None}}
    return {"id": msg_id, "type": "event", "event": {
        "event_type": "state_changed", "data": {"entity_id": entity_id, "old_state": new, "new_state": new},
        "origin": "LOCAL", "time_fired": stamp}}


def test_well_formed_frames_take_the_fast_path() -> None:
    decoder = hamessages.StateChangedDecoder()
    one = orjson.dumps(_event(7, "sensor.power", "12.5", {"unit_of_measurement": "W"}, 1))
    coalesced = orjson.dumps([_event(7, "sensor.power", "13", {"unit_of_measurement": "W"}, 2),
                              _event(9, "light.hall", "on", {"brightness": 255}, 2)])
    removed = orjson.dumps({"id": 7, "type": "event", "event": {
        "event_type": "state_changed", "data": {"entity_id": "sensor.gone", "old_state": None, "new_state": None}}})
    for frame in (one, coalesced, removed, one.decode()):
        fast = decoder.decode(frame)
        assert fast is not None
        assert exact(fast) == exact(general_path(frame if isinstance(frame, bytes)
                                                                      else frame.encode()))
    assert [i for i, _ in decoder.decode(coalesced) or []] == [7, 9]
    assert (decoder.decode(removed) or [])[0][1].new_state is None


def test_other_frames_are_left_to_the_general_path() -> None:
    decoder = hamessages.StateChangedDecoder()
    good = _event(1, "sensor.a", "1", {}, 1)
    declined = [
        {"id": 1, "type": "result", "success": True, "result": None},
        {"id": 1, "type": "pong"},
        [good, {"id": 2, "type": "pong"}],
        {**good, "event": {**good["event"], "event_type": "call_service"}},
        {**good, "id": True},
        {**good, "id": "1"},
    ]
    for value in declined:
        assert decoder.decode(orjson.dumps(value)) is None, value
    for frame in (b"", b"{", b"[1]", b"\xff", b'{"id":1,"type":"event","event":' + b"[" * 5000 + b"]" * 5000 + b"}"):
        assert decoder.decode(frame) is None


def test_unchanged_attributes_are_decoded_once_per_entity() -> None:
    decoder = hamessages.StateChangedDecoder()

    def attributes(frame: dict[str, Any]) -> dict[str, Any]:
        (_, change), = decoder.decode(orjson.dumps(frame)) or []
        assert change.new_state is not None
        return change.new_state.attributes

    first = attributes(_event(1, "sensor.a", "1", {"unit_of_measurement": "W", "x": 1}, 1))
    again = attributes(_event(1, "sensor.a", "2", {"unit_of_measurement": "W", "x": 1}, 2))
    assert again is first  # byte-identical attributes: the same dict
    other_entity = attributes(_event(1, "sensor.b", "2", {"unit_of_measurement": "W", "x": 1}, 2))
    assert other_entity is not first
    assert other_entity == first
    changed = attributes(_event(1, "sensor.a", "3", {"unit_of_measurement": "W", "x": 1.0}, 3))
    assert changed is not first
    assert type(changed["x"]) is float
    big = {"text": "y" * 10_000}
    assert attributes(_event(1, "sensor.a", "4", big, 4)) == big
    assert attributes(_event(1, "sensor.a", "5", big, 5)) is not attributes(_event(1, "sensor.a", "6", big, 6))
