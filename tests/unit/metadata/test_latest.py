"""LatestStates: which latest states are written when; after the final flush the file equals writing everything."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.metadata.latest import LatestStates, RowKey, Writes, row_key
from homeiq_daemon.model import EntityState, Origin, StateChange, ns_to_iso


def _state(entity_id: str, value: str, n: int = 0, **attrs: Any) -> EntityState:
    when = ns_to_iso(1_700_000_000_000_000_000 + n * 1000)
    return EntityState(entity_id, value, attrs, when, when, 1_700_000_000_000_000_000 + n * 1000)


def _apply(file: dict[str, RowKey], latest: LatestStates, writes: Writes) -> None:
    for entity_id, state in writes.states.items():
        file[entity_id] = row_key(state)
    for entity_id in writes.removed:
        file.pop(entity_id, None)
    latest.written(writes)


def test_only_new_rows_and_removals_are_due_before_stop() -> None:
    latest = LatestStates(max_entities=100)
    latest.load([("sensor.known", ("1", None, None, None, None))])
    latest.note(StateChange("sensor.known", _state("sensor.known", "1", 5), None, "live"))  # only last_updated
    assert len(latest) == 0
    latest.note(StateChange("sensor.known", _state("sensor.known", "2", 6), None, "live"))
    latest.note(StateChange("sensor.new", _state("sensor.new", "7"), None, "snapshot"))
    latest.note(StateChange("switchbot.plug", _state("switchbot.plug", "on"), None, "switchbot"))
    latest.stage_value("watermark", "9")
    assert latest.due == 3
    writes = latest.take(final=False)
    assert set(writes.states) == {"sensor.new", "switchbot.plug"}
    assert writes.values == {"watermark": "9"}
    latest.written(writes)
    assert latest.due == 0
    final = latest.take(final=True)
    assert [s.state for s in final.states.values()] == ["2"]


def test_attribute_churn_is_not_a_write_but_a_unit_change_is() -> None:
    latest = LatestStates(max_entities=100)
    latest.load([("sensor.p", ("5", "Power", None, "W", None))])
    latest.note(StateChange("sensor.p", _state("sensor.p", "5", 1, friendly_name="Power", unit_of_measurement="W",
                                               voltage=230.1), None, "live"))  # fmt: skip
    assert len(latest) == 0
    latest.note(StateChange("sensor.p", _state("sensor.p", "5", 2, friendly_name="Power", unit_of_measurement="kW"),
                            None, "live"))  # fmt: skip
    assert len(latest) == 1


def test_failed_write_is_kept_for_the_next_flush() -> None:
    latest = LatestStates(max_entities=100)
    latest.note(StateChange("sensor.a", _state("sensor.a", "1"), None, "live"))
    latest.stage_value("k", "v")
    writes = latest.take(final=False)
    latest.restore(writes)
    again = latest.take(final=False)
    assert set(again.states) == {"sensor.a"}
    assert again.values == {"k": "v"}


def test_bounded() -> None:
    latest = LatestStates(max_entities=3)
    for i in range(5):
        latest.note(StateChange(f"sensor.s{i}", _state(f"sensor.s{i}", "1"), None, "live"))
    assert len(latest) == 3
    assert latest.dropped == 2


_ops = st.lists(
    st.tuples(
        st.sampled_from(["sensor.a", "sensor.b", "light.c"]),
        st.one_of(st.none(), st.sampled_from(["on", "off", "1"])),
        st.sampled_from(["live", "snapshot", "switchbot", "replay"]),
        st.sampled_from([None, "W", "kW"]),
        st.booleans(),  # a periodic flush after this change
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(preloaded=st.dictionaries(st.sampled_from(["sensor.a", "light.c"]), st.sampled_from(["on", "1"])), ops=_ops)
def test_final_file_equals_writing_every_change(preloaded: dict[str, str], ops: list[Any]) -> None:
    file: dict[str, RowKey] = {eid: (value, None, None, None, None) for eid, value in preloaded.items()}
    expected = dict(file)
    latest = LatestStates(max_entities=100)
    latest.load(file.items())
    for n, (entity_id, value, origin, unit, flush) in enumerate(ops):
        origin_: Origin = origin
        state = None if value is None else _state(entity_id, value, n, unit_of_measurement=unit)
        latest.note(StateChange(entity_id, state, None, origin_))
        if state is None:
            expected.pop(entity_id, None)
        else:
            expected[entity_id] = row_key(state)
        if flush:
            _apply(file, latest, latest.take(final=False))
            # Only value updates wait for the final flush: rows appear and disappear at once.
            assert set(file) == set(expected)
    _apply(file, latest, latest.take(final=True))
    assert file == expected
