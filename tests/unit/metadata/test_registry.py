"""HA registry payloads -> plain values: the shapes HA 2024.3 sends, hostile input, enrichment."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeiq_daemon.metadata.registry import (
    Area,
    Device,
    RegistryEntity,
    RegistryError,
    RegistryEvent,
    locate,
    parse_area,
    parse_device,
    parse_entity,
    parse_entries,
    parse_event,
    parse_list,
    tag_table,
)
from tests.support.hypo import examples

# As HA 2024.3.3 serialises them (components/config/area_registry.py _entry_dict, DeviceEntry.dict_repr,
# RegistryEntry.as_partial_dict).
HA_AREA = {"aliases": ["Cuisine"], "area_id": "kitchen", "icon": None, "name": "Kitchen", "picture": None}
HA_DEVICE = {
    "area_id": "kitchen", "configuration_url": None, "config_entries": ["abc"], "connections": [["mac", "aa:bb"]],
    "disabled_by": None, "entry_type": None, "hw_version": None, "id": "d41d8cd98f00b204e9800998ecf8427e",
    "identifiers": [["hue", "1"]], "manufacturer": "Signify", "model": "LCT015", "name_by_user": "Ceiling",
    "name": "Hue color lamp", "serial_number": None, "sw_version": "1.2", "via_device_id": "hub1",
}  # fmt: skip
HA_ENTITY = {
    "area_id": None, "config_entry_id": "abc", "device_id": "d41d8cd98f00b204e9800998ecf8427e",
    "disabled_by": None, "entity_category": None, "entity_id": "light.kitchen_ceiling", "has_entity_name": True,
    "hidden_by": None, "icon": None, "id": "f1", "labels": [], "name": None, "options": {"conversation": {}},
    "original_name": None, "platform": "hue", "translation_key": None, "unique_id": "00:17:88-0b",
}  # fmt: skip


def test_parses_ha_2024_3_shapes() -> None:
    assert parse_area(HA_AREA) == Area("kitchen", "Kitchen", aliases=("Cuisine",))
    device = parse_device(HA_DEVICE)
    assert device.device_id == HA_DEVICE["id"]
    assert (device.manufacturer, device.model, device.area_id, device.via_device_id) == (
        "Signify", "LCT015", "kitchen", "hub1",
    )  # fmt: skip
    assert device.display_name == "Ceiling"
    entity = parse_entity(HA_ENTITY)
    assert entity.entity_id == "light.kitchen_ceiling"
    assert entity.domain == "light"
    assert entity.platform == "hue"
    assert entity.has_entity_name is True
    assert entity.device_id == HA_DEVICE["id"]


def test_later_releases_fields_are_taken() -> None:
    area = parse_area({**HA_AREA, "floor_id": "ground", "labels": ["b", "a"]})
    assert area.floor_id == "ground"
    assert area.labels == ("a", "b")


@pytest.mark.parametrize(
    "bad",
    [
        None, [], "kitchen", {"name": "x"}, {"area_id": ""}, {"area_id": 5}, {"area_id": "a" * 300},
        {"area_id": "k", "name": {"x": 1}}, {"area_id": "k", "aliases": "notalist"},
    ],
)  # fmt: skip
def test_bad_area_raises(bad: Any) -> None:
    with pytest.raises(RegistryError):
        parse_area(bad)


@pytest.mark.parametrize("entity_id", [None, "", "nodot", ".x", "x.", 5, "a." + "b" * 300])
def test_bad_entity_id_raises(entity_id: Any) -> None:
    with pytest.raises(RegistryError):
        parse_entity({**HA_ENTITY, "entity_id": entity_id})


def test_list_skips_and_counts_malformed_items() -> None:
    items, bad = parse_list("entity", [HA_ENTITY, {"entity_id": 3}, "junk", {**HA_ENTITY, "entity_id": "sensor.b"}])
    assert [e.entity_id for e in items] == ["light.kitchen_ceiling", "sensor.b"]
    assert bad == 2
    with pytest.raises(RegistryError):
        parse_list("area", {"not": "a list"})


def test_long_strings_are_bounded() -> None:
    device = parse_device({**HA_DEVICE, "name": "x" * 10_000})
    assert device.name is not None
    assert len(device.name) == 512


def test_get_entries_found_and_missing() -> None:
    found, missing, bad = parse_entries({"light.kitchen_ceiling": HA_ENTITY, "sensor.gone": None, "bad": None})
    assert [e.entity_id for e in found] == ["light.kitchen_ceiling"]
    assert missing == ["sensor.gone"]
    assert bad == 1


@pytest.mark.parametrize(
    ("event_type", "data", "expected"),
    [
        ("area_registry_updated", {"action": "create", "area_id": "attic"}, RegistryEvent("area", "create", "attic")),
        ("device_registry_updated", {"action": "update", "device_id": "d1", "changes": {"area_id": None}},
         RegistryEvent("device", "update", "d1")),
        ("entity_registry_updated", {"action": "remove", "entity_id": "light.a"},
         RegistryEvent("entity", "remove", "light.a")),
        ("entity_registry_updated",
         {"action": "update", "entity_id": "light.b", "changes": {"entity_id": "light.a"}, "old_entity_id": "light.a"},
         RegistryEvent("entity", "update", "light.b", "light.a")),
    ],
)  # fmt: skip
def test_events(event_type: str, data: dict[str, Any], expected: RegistryEvent) -> None:
    assert parse_event(event_type, data) == expected


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("state_changed", {"action": "create"}),
        ("area_registry_updated", {"action": "explode", "area_id": "x"}),
        ("area_registry_updated", {"action": "create"}),
        ("entity_registry_updated", {"action": "create", "entity_id": "nodot"}),
        ("device_registry_updated", None),
    ],
)
def test_bad_events_raise(event_type: str, data: Any) -> None:
    with pytest.raises(RegistryError):
        parse_event(event_type, data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
keys = st.sampled_from(["area_id", "id", "entity_id", "name", "labels", "aliases", "action", "device_id", "x"])


def _text_or_none(value: Any) -> str | type[RegistryError] | None:
    """What a text field of the registry parsers must be for ``value`` (RegistryError: refused)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return RegistryError
    return str(value)


def _good_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255


@settings(max_examples=examples(300), deadline=timedelta(seconds=2))
@given(st.dictionaries(keys, json_values, max_size=8) | json_values)
def test_parsers_return_the_input_or_refuse_it(raw: Any) -> None:
    """Each parser either returns the values it was given (as HA names them) or raises RegistryError, and
    refuses only what its documented rules refuse."""
    is_object = isinstance(raw, dict)
    try:
        area = parse_area(raw)
    except RegistryError:
        assert not is_object or not _good_id(raw.get("area_id")) or any(
            _text_or_none(raw.get(k)) is RegistryError for k in ("name",)) or any(
            raw.get(k) is not None and not isinstance(raw.get(k), list) for k in ("aliases", "labels")), raw
    else:
        assert is_object
        assert area.area_id == raw["area_id"]
        assert area.name == (_text_or_none(raw.get("name")) or raw["area_id"])
    try:
        device = parse_device(raw)
    except RegistryError:
        assert not is_object or not _good_id(raw.get("id")) or any(
            _text_or_none(raw.get(k)) is RegistryError for k in ("name", "area_id")) or (
            raw.get("labels") is not None and not isinstance(raw.get("labels"), list)), raw
    else:
        assert device.device_id == raw["id"]
        assert device.name == _text_or_none(raw.get("name"))
        assert device.area_id == _text_or_none(raw.get("area_id"))
    try:
        entity = parse_entity(raw)
    except RegistryError:
        entity_id = raw.get("entity_id") if is_object else None
        well_formed = isinstance(entity_id, str) and all(entity_id.partition("."))
        assert not is_object or not well_formed or any(
            _text_or_none(raw.get(k)) is RegistryError for k in ("name", "area_id", "device_id")) or (
            raw.get("labels") is not None and not isinstance(raw.get("labels"), list)), raw
    else:
        assert entity.entity_id == raw["entity_id"]
        assert entity.name == _text_or_none(raw.get("name"))
        assert entity.area_id == _text_or_none(raw.get("area_id"))
        assert entity.device_id == _text_or_none(raw.get("device_id"))
        labels = raw.get("labels") or []
        assert entity.labels == tuple(sorted(str(x) for x in labels if isinstance(x, str | int | float)))[:64]
    for event_type, key in (("area_registry_updated", "area_id"), ("device_registry_updated", "device_id"),
                            ("entity_registry_updated", "entity_id")):
        try:
            event = parse_event(event_type, raw)
        except RegistryError:
            continue
        assert event.action == raw["action"]
        assert event.item_id == raw[key]


def test_locate_entity_area_wins_over_device_area() -> None:
    areas = {"kitchen": Area("kitchen", "Kitchen"), "office": Area("office", "Office")}
    devices = {"d1": Device("d1", name="Lamp", area_id="kitchen", manufacturer="Acme", model="L1")}
    entities = [
        RegistryEntity("light.a", device_id="d1"),
        RegistryEntity("light.b", device_id="d1", area_id="office"),
        RegistryEntity("sensor.c"),
    ]
    places = locate(entities, devices, areas)
    assert places["light.a"].area_id == "kitchen"
    assert places["light.a"].area_name == "Kitchen"
    assert places["light.a"].manufacturer == "Acme"
    assert places["light.b"].area_id == "office"
    assert places["sensor.c"].area_id is None
    assert tag_table(places, area=True, device=False) == {"light.a": {"area": "kitchen"}, "light.b": {"area": "office"}}
    assert tag_table(places, area=True, device=True)["light.a"] == {"area": "kitchen", "device": "Lamp"}
    assert tag_table(places, area=False, device=False) == {}
