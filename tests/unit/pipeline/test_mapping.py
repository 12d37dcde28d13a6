"""State -> point mapping: HA-compatible rules on known cases (each line read back with the tests' own parser),
and caches that never leak from one state into the next."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from homeiq_daemon.config import MappingSettings
from homeiq_daemon.model import EntityState, iso_to_ns
from homeiq_daemon.pipeline.mapping import PointMapper
from homeiq_daemon.sinks.lineprotocol import Point
from tests.support.hypo import examples
from tests.support.lineproto import parse_line
from tests.support.mapped import mapped_point

STAMP = "2026-11-20T12:00:00.123456+00:00"


def state(entity_id: str, raw_state: str, /, **attributes: Any) -> EntityState:
    return EntityState(entity_id, raw_state, attributes, STAMP, STAMP, iso_to_ns(STAMP))


def point(mapping: MappingSettings, s: EntityState) -> Point | None:
    return mapped_point(PointMapper(mapping), s)


def test_numeric_sensor_uses_unit_as_measurement_and_last_updated_as_time() -> None:
    p = point(MappingSettings(), state("sensor.kitchen_temp", "21.5", unit_of_measurement="°C",
                                       friendly_name="Kitchen"))
    assert p == Point("°C", {"domain": "sensor", "entity_id": "kitchen_temp"},
                      {"value": 21.5, "friendly_name_str": "Kitchen"}, iso_to_ns(STAMP))


def test_on_off_like_states_get_value_and_state() -> None:
    for raw, number in [("on", 1.0), ("off", 0.0), ("home", 1.0), ("not_home", 0.0), ("open", 1.0)]:
        p = point(MappingSettings(), state("binary_sensor.door", raw))
        assert p is not None
        assert p.measurement == "binary_sensor.door"
        assert p.fields == {"state": raw, "value": number}


def test_text_state_and_skipped_states() -> None:
    p = point(MappingSettings(), state("media_player.tv", "playing"))
    assert p is not None
    assert p.fields == {"state": "playing"}
    for skipped in ("unknown", "unavailable", ""):
        assert point(MappingSettings(), state("sensor.x", skipped)) is None


def test_non_finite_values_are_dropped() -> None:
    assert point(MappingSettings(), state("sensor.x", "nan")) is None
    p = point(MappingSettings(), state("sensor.x", "inf", reading=float("inf"), other=2))
    assert p is not None
    assert p.fields == {"other": 2.0}


def test_attribute_rules_follow_home_assistant() -> None:
    p = point(MappingSettings(), state("sensor.p", "5", unit_of_measurement="W", device_class="power",
                                       reading="12.5 W", flag=True, empty=None, colours=[1, 2], value=7))
    assert p is not None
    assert p.fields == {"value": 5.0, "device_class_str": "power", "reading_str": "12.5 W", "reading": 12.5,
                        "flag": 1.0, "empty_str": "None", "colours_str": "[1, 2]", "value_": 7.0}


def test_measurement_options() -> None:
    s = state("sensor.t", "1", unit_of_measurement="°C", device_class="temperature")
    assert point(MappingSettings(measurement_attr="entity_id"), s).measurement == "sensor.t"  # type: ignore[union-attr]
    p = point(MappingSettings(measurement_attr="domain__device_class"), s)
    assert p is not None
    assert p.measurement == "sensor__temperature"
    assert "device_class_str" not in p.fields
    assert p.fields["unit_of_measurement_str"] == "°C"
    assert point(MappingSettings(override_measurement="ha"), s).measurement == "ha"  # type: ignore[union-attr]
    no_unit = state("switch.a", "on")
    assert point(MappingSettings(default_measurement="state"), no_unit).measurement == "state"  # type: ignore[union-attr]
    custom = MappingSettings(component_config={"sensor.t": {"override_measurement": "temps"}},
                             component_config_domain={"sensor": {"override_measurement": "sensors",
                                                                 "ignore_attributes": ["device_class"]}})
    p = point(custom, s)
    assert p is not None
    assert p.measurement == "temps"
    assert "device_class_str" not in p.fields


def test_tags_and_filters() -> None:
    mapping = MappingSettings(tags={"site": "home"}, tags_attributes=["friendly_name"],
                              ignore_attributes=["secret"], exclude={"entity_globs": ["sensor.tmp_*"]})
    p = point(mapping, state("sensor.a", "1", friendly_name="A b", secret="x"))
    assert p is not None
    assert p.tags == {"domain": "sensor", "entity_id": "a", "friendly_name": "A b", "site": "home"}
    assert p.fields == {"value": 1.0}
    assert point(mapping, state("sensor.tmp_1", "1")) is None


def test_include_exclude_cases_follow_home_assistant() -> None:
    only_domain = PointMapper(MappingSettings(include={"domains": ["sensor"]}))
    assert only_domain.accepts("sensor.a")
    assert not only_domain.accepts("light.a")
    mixed = PointMapper(MappingSettings(include={"domains": ["sensor"], "entities": ["light.keep"]},
                                        exclude={"entities": ["sensor.drop"], "entity_globs": ["sensor.x*"]}))
    assert mixed.accepts("light.keep")
    assert not mixed.accepts("sensor.drop")
    assert not mixed.accepts("sensor.xyz")
    assert mixed.accepts("sensor.abc")
    assert not mixed.accepts("light.other")


def test_extra_tags_hook() -> None:
    mapper = PointMapper(MappingSettings(), extra_tags=lambda entity_id: {"area": "Kitchen"})
    line = mapper.map_line(state("sensor.a", "1"))
    assert line == f"sensor.a,area=Kitchen,domain=sensor,entity_id=a value=1.0 {iso_to_ns(STAMP)}"


# --- the fast path is the plain path ---------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(),
                    st.sampled_from(["12.5 W", "42", "nan", "inf", "°C", "", "a1b2", "v1.2", "x\"y\\z"]),
                    st.text(max_size=8))
attributes = st.dictionaries(
    st.one_of(st.sampled_from(["unit_of_measurement", "device_class", "friendly_name", "value", "state", "time",
                               "value_", "x_str", "x"]), st.text(min_size=1, max_size=6)),
    st.one_of(scalars, st.lists(scalars, max_size=2)), max_size=6)
states = st.builds(
    state,
    st.sampled_from(["sensor.a", "light.b", "switch.c_d", "climate.e"]),
    st.one_of(st.sampled_from(["on", "off", "home", "unknown", "heat", "1.5", "nan", "-3"]), st.text(max_size=6)),
)
mappings = st.fixed_dictionaries({}, optional={
    "measurement_attr": st.sampled_from(["unit_of_measurement", "domain__device_class", "entity_id"]),
    "default_measurement": st.sampled_from(["d", "°C"]),
    "tags": st.dictionaries(st.sampled_from(["site", "domain"]), st.sampled_from(["pi", "x y"]), max_size=2),
    "tags_attributes": st.lists(st.sampled_from(["friendly_name", "device_class"]), max_size=2, unique=True),
    "ignore_attributes": st.lists(st.sampled_from(["friendly_name", "value", "unit_of_measurement"]), max_size=2,
                                  unique=True),
})


# Keys that collide once written: the colliding-key example a randomised run once found, kept as an example.
COLLIDING_ATTRIBUTES = [{"time": 1.0, "time_": 2.0}, {"a\x00": 1.0, "a\x01": 2.0}, {"x": "a", "x_str": 1.0}]


@given(mapping=mappings, batch=st.lists(st.tuples(states, attributes), min_size=1, max_size=10))
@example(mapping={}, batch=[(state("sensor.a", "on"), attrs) for attrs in COLLIDING_ATTRIBUTES])
@settings(max_examples=examples(400), deadline=None)
def test_map_line_caches_never_leak_between_states(mapping: dict[str, Any],
                                                   batch: list[tuple[EntityState, dict[str, Any]]]) -> None:
    mapper = PointMapper(MappingSettings(**mapping))
    for s, attrs in batch:  # the same mapper across the batch vs a fresh one (empty caches) for each state
        s = EntityState(s.entity_id, s.state, attrs, s.last_changed, s.last_updated, s.last_updated_ns)
        line = mapper.map_line(s)
        assert line == PointMapper(MappingSettings(**mapping)).map_line(s)
        if line is not None:  # and what it writes parses, with no non-finite number in it
            parsed = parse_line(line)
            assert parsed.fields
            assert all(not isinstance(v, float) or math.isfinite(v) for v in parsed.fields.values())



_memo_values = st.one_of(st.integers(0, 2), st.booleans(), st.none(), st.sampled_from(["on", "1.5", "x 2.5"]),
                         st.lists(st.one_of(st.integers(0, 1), st.booleans()), max_size=2),
                         st.floats(allow_infinity=True, allow_nan=True))  # fmt: skip
_memo_attrs = st.dictionaries(st.sampled_from(["value", "state", "unit_of_measurement", "a", "a_str", "time"]),
                              _memo_values, max_size=4)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.tuples(st.sampled_from(["1", "2.5", "on", "nan", "foo"]), _memo_attrs, st.booleans()),
                       min_size=1, max_size=12))  # fmt: skip
# Found by a run: a unit 0 then False (equal keys) once shared one measurement; 1 then True shared one memo.
@example(events=[("1", {"value": None, "state": None, "unit_of_measurement": 0}, False),
                 ("1", {"unit_of_measurement": False}, False)])  # fmt: skip
@example(events=[("1", {"a": 1}, False), ("1", {"a": True}, False), ("1", {"a": 1.0}, False)])
def test_attribute_memo_renders_like_a_fresh_mapper(events: list[Any]) -> None:
    """One entity's events, attributes repeated (the same dict or an equal one): the per-entity memo of the
    rendered attribute fields never changes a line."""
    memo_mapper = PointMapper(MappingSettings())
    previous: dict[str, Any] | None = None
    for n, (raw_state, attrs, reuse) in enumerate(events):
        attributes = previous if reuse and previous is not None else attrs
        when = f"2024-03-01T10:00:{n:02d}+00:00"
        event = EntityState("sensor.memo", raw_state, attributes, when, when, iso_to_ns(when))
        assert memo_mapper.map_line(event) == PointMapper(MappingSettings()).map_line(event)
        previous = attributes


@pytest.mark.parametrize("attrs", COLLIDING_ATTRIBUTES[:2], ids=["time-and-time_", "control-characters"])
def test_colliding_keys_keep_every_value(attrs: dict[str, Any]) -> None:
    line = PointMapper(MappingSettings()).map_line(state("sensor.a", "1", **attrs))
    assert line is not None
    fields = parse_line(line).fields
    values = sorted(v for k, v in fields.items() if k != "value")
    # Every attribute keeps its value under a key of its own: a second equal key would be lost in InfluxDB.
    assert values == sorted(attrs.values())
    assert line.count("=") - line.split(" ")[0].count("=") == len(fields)
