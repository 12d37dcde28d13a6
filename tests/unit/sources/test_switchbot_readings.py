"""SwitchBot readings: status bodies and webhook pushes (shapes from the API description) -> entity states."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.config import MappingSettings
from homeiq_daemon.errors import ProtocolError
from homeiq_daemon.model import EntityState
from homeiq_daemon.pipeline.mapping import PointMapper
from homeiq_daemon.sources.switchbot.api import SwitchBotDevice
from homeiq_daemon.sources.switchbot.readings import (
    changes,
    entity_state,
    object_ids,
    parse_webhook,
    sample_time_ns,
    slugify,
    status_readings,
)
from tests.support.fake_switchbot import README_PUSHES
from tests.support.hypo import examples

NOW_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

# Status bodies as the README documents them ("Get device status")
METER = {"deviceId": "C271111EC0AB", "deviceType": "Meter", "hubDeviceId": "FA7310762361", "humidity": 52,
         "temperature": 26.1, "battery": 100, "version": "V4.2"}  # fmt: skip
METER_PLUS = {"deviceId": "D1A2B3C4D5E6", "deviceType": "MeterPlus", "hubDeviceId": "FA7310762361",
              "battery": 60, "version": "V4.2", "temperature": -3.5, "humidity": 88}  # fmt: skip
PLUG_MINI_US = {"deviceId": "6055F92FCFD2", "deviceType": "Plug Mini (US)", "hubDeviceId": "000000000000",
                "voltage": 121.2, "version": "V3.1-6.3", "weight": 45.7, "electricityOfDay": 118,
                "electricCurrent": 377.0, "power": "on"}  # fmt: skip
PLUG_MINI_EU = {"deviceId": "94A990502B72", "deviceType": "Plug Mini (EU)", "switchStatus": 1, "voltage": 231.0,
                "power": 12.5, "electricCurrent": 54.0, "usedElectricity": 300, "version": "V1.0"}  # fmt: skip
HUB_2 = {"deviceId": "FA7310762361", "deviceType": "Hub 2", "hubDeviceId": "FA7310762361", "temperature": 21.4,
         "lightLevel": 12, "version": "V4.2", "humidity": 41}  # fmt: skip


def _states(body: dict[str, object]) -> dict[str, str]:
    return {r.spec.key: r.state for r in status_readings(body)}


def test_meter_status() -> None:
    assert _states(METER) == {"temperature": "26.1", "humidity": "52", "battery": "100"}
    assert _states(METER_PLUS) == {"temperature": "-3.5", "humidity": "88", "battery": "60"}


def test_plug_mini_status() -> None:
    assert _states(PLUG_MINI_US) == {"voltage": "121.2", "power": "45.7", "current": "377.0", "switch": "on"}
    assert _states(PLUG_MINI_EU) == {"switch": "on", "voltage": "231.0", "power": "12.5", "current": "54.0"}


def test_hub_2_status() -> None:
    assert _states(HUB_2) == {"temperature": "21.4", "light_level": "12", "humidity": "41"}


def test_odd_values_are_skipped_not_guessed() -> None:
    body = {"deviceType": "Meter", "temperature": "warm", "humidity": True, "battery": float("nan"), "CO2": 612}
    assert _states(body) == {"co2": "612"}
    assert _states({"deviceType": "Water Detector", "status": 1, "battery": 90}) == {"leak": "on", "battery": "90"}
    assert _states({"deviceType": "Bot", "status": 1}) == {}
    with pytest.raises(ProtocolError):
        status_readings(["not", "an", "object"])


def test_entity_state_has_home_assistant_sensor_attributes_and_maps_like_one() -> None:
    (reading,) = [r for r in status_readings(METER) if r.spec.key == "temperature"]
    state = entity_state("switchbot.meter_temperature", reading, "Meter", NOW_NS)
    assert state.attributes == {"friendly_name": "Meter Temperature", "unit_of_measurement": "°C",
                                "device_class": "temperature", "state_class": "measurement"}  # fmt: skip
    assert state.last_updated == "2026-01-01T00:00:00+00:00"
    assert state.last_updated_ns == NOW_NS
    line = PointMapper(MappingSettings()).map_line(state)
    assert line is not None
    assert line == (
        '°C,domain=switchbot,entity_id=meter_temperature value=26.1,friendly_name_str="Meter Temperature",'
        'device_class_str="temperature",state_class_str="measurement" 1767225600000000000'
    )


# --- webhook pushes, as the README's "Receive events from webhook" shows them -------------------------------------


def _push(context: dict[str, object], **event: object) -> bytes:
    return orjson.dumps({"eventType": "changeReport", "eventVersion": "1", "context": context, **event})


def test_meter_push() -> None:
    raw = _push({"deviceType": "WoMeter", "deviceMac": "C2:71:11:1E:C0:AB", "temperature": 22.5,
                 "scale": "CELSIUS", "humidity": 31, "battery": 100, "timeOfSample": 1767225590123})  # fmt: skip
    event = parse_webhook(raw)
    assert event.event_type == "changeReport"
    assert event.device_id == "C271111EC0AB"
    assert event.sample_ms == 1767225590123
    assert {r.spec.key: r.state for r in event.readings} == {"temperature": "22.5", "humidity": "31", "battery": "100"}


@pytest.mark.parametrize(("device_type", "expected"), [
    ("WoMeter", {"temperature": "22.5", "humidity": "31", "battery": "100"}),
    ("WoHub2", {"temperature": "13", "humidity": "18", "light_level": "19"}),
    ("WoPlugUS", {"switch": "on"}),
])  # fmt: skip
def test_the_api_readmes_push_samples(device_type: str, expected: dict[str, str]) -> None:
    """The samples of the README's "Receive events from webhook", byte for byte as documented."""
    sample = README_PUSHES[device_type]
    event = parse_webhook(orjson.dumps(sample))
    assert event.event_type == "changeReport"
    assert event.device_id == sample["context"]["deviceMac"]
    assert event.sample_ms == 123456789
    assert {r.spec.key: r.state for r in event.readings} == expected


def test_fahrenheit_push_is_stored_in_celsius_like_the_status_api() -> None:
    raw = _push({"deviceType": "WoMeter", "deviceMac": "C271111EC0AB", "temperature": 72.5, "scale": "FAHRENHEIT"})
    assert {r.spec.key: r.state for r in parse_webhook(raw).readings} == {"temperature": "22.5"}


def test_plug_and_motion_pushes() -> None:
    plug = parse_webhook(_push({"deviceType": "WoPlugUS", "deviceMac": "6055F92FCFD2", "powerState": "ON"}))
    assert [(r.spec.key, r.state) for r in plug.readings] == [("switch", "on")]
    motion = parse_webhook(_push({"deviceType": "WoPresence", "deviceMac": "AA11BB22CC33",
                                  "detectionState": "NOT_DETECTED", "battery": 80}))  # fmt: skip
    assert {r.spec.key: r.state for r in motion.readings} == {"motion": "off", "battery": "80"}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"eventType": "changeReport"}',
        b'{"eventType": 5, "context": {}}',
        b'{"eventType": "changeReport", "context": {"deviceType": "WoMeter"}}',
        b'{"eventType": "changeReport", "context": {"deviceType": "WoMeter", "deviceMac": "not a mac!"}}',
        b'{"eventType": "changeReport", "context": {"deviceMac": "C271111EC0AB"}}',
        b"{" + b" " * (65 * 1024) + b"}",
    ],
)
def test_malformed_pushes_raise_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_webhook(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=examples(400))
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        json_values.map(orjson.dumps),
        st.dictionaries(
            st.sampled_from(["deviceType", "deviceMac", "temperature", "power", "timeOfSample", "scale", "status"]),
            json_values,
        ).map(lambda ctx: orjson.dumps({"eventType": "changeReport", "context": ctx})),
    )
)
def test_arbitrary_pushes_parse_or_raise_protocol_error(payload: bytes) -> None:
    try:
        event = parse_webhook(payload)
    except ProtocolError:
        return
    for reading in event.readings:
        assert isinstance(reading.state, str)
        assert reading.state


def test_sample_time() -> None:
    received = NOW_NS
    assert sample_time_ns(1767225590123, received) == 1767225590123 * 1_000_000
    assert sample_time_ns(None, received) == received
    assert sample_time_ns(123456789, received) == received  # the README's placeholder: not a real time
    assert sample_time_ns(1767225600000 + 60_000, received) == received  # ahead of our clock: clamped
    assert sample_time_ns(-5, received) == received


# --- names and changes ------------------------------------------------------------------------------------------


def test_slugs_and_collisions() -> None:
    assert slugify("Wohnzimmer Thermometer (Süd)") == "wohnzimmer_thermometer_sud"
    assert slugify("***") == ""
    devices = [
        SwitchBotDevice("B2", "Meter", "Meter"),
        SwitchBotDevice("A1", "Meter", "Meter"),
        SwitchBotDevice("C3", "☃", "Meter"),
    ]
    assert object_ids(devices) == {"A1": "meter", "B2": "meter_b2", "C3": "c3"}


def test_a_repeated_reading_is_no_change() -> None:
    readings = status_readings(METER)
    known: dict[str, EntityState] = {}
    first = changes("meter", "Meter", readings, NOW_NS, known.get)
    assert sorted(c.entity_id for c in first) == ["switchbot.meter_battery", "switchbot.meter_humidity",
                                                  "switchbot.meter_temperature"]  # fmt: skip
    assert all(c.origin == "switchbot" and c.old_state is None for c in first)
    known.update({c.entity_id: c.new_state for c in first if c.new_state is not None})
    assert changes("meter", "Meter", readings, NOW_NS + 10**9, known.get) == []
    warmer = status_readings({**METER, "temperature": 26.3})
    (change,) = changes("meter", "Meter", warmer, NOW_NS + 2 * 10**9, known.get)
    assert change.entity_id == "switchbot.meter_temperature"
    assert change.new_state is not None
    assert change.new_state.state == "26.3"
    assert change.old_state is known["switchbot.meter_temperature"]
